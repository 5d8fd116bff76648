FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
# A C compiler builds a gradient-boosting model's trees into native code for bulk scoring
# (scoring.ml.compiled); without one, scikit-learn predicts, slower.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
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
