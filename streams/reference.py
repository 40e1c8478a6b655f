"""Reference data (residents, visitor passes, vehicles, community rules) held by every worker.

Each worker needs the *whole* reference view — a household quota or a community's rules are not
co-partitioned with the scan that needs them — so the store reads every partition of the compacted
``reference.*`` topics from the beginning (no consumer group) and keeps following them. A new
worker rebuilds the view from the topics; ``ready`` is set once it has caught up with the end
offsets seen at start.

Records are kept as their Avro bytes and decoded on lookup (with a small cache): a million
residents cost their encoded size, not a million Python dicts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from fangxian.core.kafka_security import kafka_client_kwargs
from fangxian.core.metrics import Metrics
from fangxian.core.privacy import mask_token
from fangxian.core.settings import Settings
from schemas import Codec, InvalidEvent
from schemas.topics import KEY_SEP, REFERENCE_ROUTES

log = logging.getLogger(__name__)

#: reference kind → (record name, Settings.topics attribute)
#: reference kind → (record name, Topics attribute), from the contract table
KINDS: dict[str, tuple[str, str]] = {str(r.kind): (r.record, r.topic) for r in REFERENCE_ROUTES}

UpdateHook = Callable[[str, str, dict[str, Any] | None], None]


class EncodedRecords(Mapping[str, dict[str, Any]]):
    """A read-only mapping id → record dict over Avro-encoded values, decoded on access."""

    def __init__(self, codec: Codec, record_name: str, cache_size: int = 20_000) -> None:
        self._codec = codec
        self._record_name = record_name
        self._raw: dict[str, bytes] = {}
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._cache_size = cache_size

    def put(self, key: str, value: bytes | None) -> None:
        self._cache.pop(key, None)
        if value is None:
            self._raw.pop(key, None)
        else:
            self._raw[key] = value

    def __getitem__(self, key: str) -> dict[str, Any]:
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        # validated once by ReferenceStore.apply when it arrived
        record = self._codec.decode(self._record_name, self._raw[key], validate=False)
        self._cache[key] = record
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return record

    def __contains__(self, key: object) -> bool:
        return key in self._raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


class ReferenceStore:
    """Follows the compacted reference topics; exposes one mapping per kind."""

    def __init__(
        self,
        settings: Settings,
        codec: Codec,
        metrics: Metrics,
        on_update: UpdateHook | None = None,
    ) -> None:
        self._settings = settings
        self._codec = codec
        self._metrics = metrics
        self._on_update = on_update
        self.records: dict[str, EncodedRecords] = {
            kind: EncodedRecords(codec, record_name) for kind, (record_name, _) in KINDS.items()
        }
        self._topic_kind = {
            getattr(settings.topics, attr): kind for kind, (_, attr) in KINDS.items()
        }
        self.ready = asyncio.Event()
        self.rejected = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            **kafka_client_kwargs(self._settings, "aiokafka"),
            enable_auto_commit=False,
            group_id=None,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await consumer.start()
        # we assign rather than subscribe, so ask the cluster for the topics' partitions
        cluster = await consumer._client.fetch_all_metadata()
        partitions: list[TopicPartition] = []
        for topic in self._topic_kind:
            for p in sorted(cluster.partitions_for_topic(topic) or ()):
                partitions.append(TopicPartition(topic, p))
        if not partitions:
            await consumer.stop()
            raise RuntimeError(
                "reference topics not found — run `fangxian topics create` first "
                "(参考数据主题不存在，请先创建主题)"
            )
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        self._consumer = consumer
        self._task = asyncio.create_task(self._follow(dict(ends)))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    def apply(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        """Apply one reference message (a tombstone deletes). Pure bookkeeping, no I/O."""
        kind = self._topic_kind[topic]
        if key is None:
            self.rejected += 1
            log.warning("reference message without key on %s ignored", topic)
            return
        rid = key.decode("utf-8", "replace")
        record: dict[str, Any] | None = None
        if value is not None:
            try:
                record = self._codec.decode(KINDS[kind][0], value)
            except InvalidEvent as err:
                self.rejected += 1
                self._metrics.dead_letters.labels(reason=err.reason).inc()
                log.warning("invalid %s record %s: %s", kind, rid, err)
                return
        if kind == "vehicles" and record is not None and KEY_SEP not in rid:
            # keyed by the plate token alone (before issue 20): never looked up, since a
            # registration is keyed by community|plate token — say so rather than hold it
            self.rejected += 1
            log.warning(
                "vehicle record keyed %s without its community ignored: load the community's "
                "vehicles again (车辆登记须按社区重新导入)",
                mask_token(rid),
            )
            return
        self.records[kind].put(rid, value)
        if self._on_update is not None:
            self._on_update(kind, rid, record)

    async def _follow(self, ends: dict[TopicPartition, int]) -> None:
        assert self._consumer is not None
        pending = {tp: end for tp, end in ends.items() if end > 0}
        if not pending:
            self.ready.set()
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=20_000)
            for tp, messages in batches.items():
                for msg in messages:
                    self.apply(tp.topic, msg.key, msg.value)
                if tp in pending and messages and messages[-1].offset + 1 >= pending[tp]:
                    del pending[tp]
            if not self.ready.is_set() and not pending:
                for kind, recs in self.records.items():
                    self._metrics.reference_records.labels(kind=kind).set(len(recs))
                log.info(
                    "reference data loaded 参考数据已加载: %s",
                    {k: len(v) for k, v in self.records.items()},
                )
                self.ready.set()
            elif batches:
                for kind, recs in self.records.items():
                    self._metrics.reference_records.labels(kind=kind).set(len(recs))
