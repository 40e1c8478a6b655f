# fangxian worker image: `fangxian worker`, `fangxian topics create`, `fangxian db migrate`.
# Build: docker build -t fangxian:0.1.0 .
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY fangxian ./fangxian
COPY schemas ./schemas
COPY streams ./streams
COPY sinks ./sinks
COPY infra ./infra
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TZ=Asia/Shanghai
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --system --uid 10001 --create-home --home-dir /app fangxian \
    && mkdir -p /data && chown fangxian:fangxian /data  # the console's credentials volume
USER fangxian
WORKDIR /app
# Faust web (6066), Prometheus metrics (9108), the staff console (6080): Settings.web_port /
# Settings.metrics_port / Settings.console_port
EXPOSE 6066 9108 6080
ENTRYPOINT ["fangxian"]
CMD ["worker"]
