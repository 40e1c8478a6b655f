"""Senders of the on-duty dispatcher: group bots (WeCom, DingTalk, Feishu), a generic signed
JSON webhook and SMS behind a provider interface. Senders only send — which message goes to
whom is decided in ``streams.dispatch``. ``delivery.Sender`` adds retries with backoff and
jitter, a circuit breaker and a rate limit per target around any channel."""
