# Production image: migrations then Uvicorn. Run it against PostgreSQL with the
# settings in an env file (see the README, "Running with Docker against PostgreSQL"):
#   docker run -d --name peer360 --env-file peer360.env -p 8000:8000 peer360
# and the mail worker from the same image:
#   docker run -d --name peer360-worker --env-file peer360.env peer360 python -m app worker
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ENVIRONMENT=production
WORKDIR /srv/app

# The locked versions (hash-checked) in a layer of their own: it is rebuilt only when
# the lock changes, not on every code change.
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock

COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
COPY templates ./templates
# Editable: the app finds templates/ and migrations/ beside its package, as in a checkout.
RUN pip install --no-cache-dir --no-deps -e . && pip check

RUN useradd --system --home /srv/app peer360 && mkdir -p data && chown peer360 data
USER peer360
EXPOSE 8000
# WEB_WORKERS app processes (they are stateless; run the worker as its own container).
ENV WEB_WORKERS=2
# exec replaces the shell, so the SIGTERM of `docker stop` reaches the server itself.
CMD ["sh", "-c", "python -m app migrate && exec python -m app serve --host 0.0.0.0 --port 8000 --workers ${WEB_WORKERS}"]
