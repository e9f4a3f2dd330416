# The migrator worker image: the package installed with the same pinned versions as CI.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 MIGRATOR_DATA_DIR=/var/lib/migrator
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY streams ./streams
COPY agents ./agents
COPY schemas ./schemas
COPY sql ./sql
RUN pip install --no-cache-dir -c constraints.txt . \
    && useradd --system --create-home --home-dir /var/lib/migrator migrator
USER migrator
EXPOSE 6066
CMD ["migrator", "worker"]
