# Production image: migrations then Uvicorn. Run it against PostgreSQL, e.g.
#   docker run -e DATABASE_URL=postgresql+psycopg://user:pw@db:5432/peer360 \
#     -e SECRET_KEY=... -e BASE_URL=https://peer360.example.com -p 8000:8000 peer360
# and the mail worker from the same image: docker run ... peer360 python -m app worker
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 ENVIRONMENT=production
WORKDIR /srv/app

COPY pyproject.toml README.md ./
COPY app ./app
RUN pip install --no-cache-dir .
COPY alembic.ini ./
COPY migrations ./migrations
COPY templates ./templates

RUN useradd --system --home /srv/app peer360 && mkdir -p data && chown peer360 data
USER peer360
EXPOSE 8000
CMD ["sh", "-c", "python -m app migrate && python -m app serve --host 0.0.0.0 --port 8000"]
