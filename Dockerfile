# The worker image: `webhooks worker` against TEMPORAL_ADDRESS.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md worker.py ./
COPY webhooks ./webhooks
COPY workflows ./workflows
COPY activities ./activities
RUN pip install --no-cache-dir . && useradd --system --uid 10001 webhooks
USER webhooks
ENTRYPOINT ["webhooks"]
CMD ["worker"]
