FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY leadscoring ./leadscoring
COPY scoring ./scoring
COPY integrations ./integrations
RUN pip install --no-cache-dir .
COPY . .
RUN useradd --create-home app && mkdir -p /app/var && chown -R app /app/var
USER app
EXPOSE 8000
CMD ["gunicorn", "leadscoring.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "4"]
