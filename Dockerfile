# Production image: migrations then Uvicorn. Run it against PostgreSQL, e.g.
#   docker run -e DATABASE_URL=postgresql+psycopg://user:pw@db:5432/peer360 \
#     -e SECRET_KEY=... -e BASE_URL=https://peer360.example.com -p 8000:8000 peer360
# and the mail worker from the same image: docker run ... peer360 python -m app worker
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 ENVIRONMENT=production
WORKDIR /srv/app

COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
COPY templates ./templates
# Editable: the app finds templates/ and migrations/ beside its package, as in a checkout.
RUN pip install --no-cache-dir -e .

RUN useradd --system --home /srv/app peer360 && mkdir -p data && chown peer360 data
USER peer360
EXPOSE 8000
# WEB_WORKERS app processes (they are stateless; run the worker as its own container).
ENV WEB_WORKERS=2
CMD ["sh", "-c", "python -m app migrate && exec python -m app serve --host 0.0.0.0 --port 8000 --workers ${WEB_WORKERS}"]
