FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
# The default image needs no C compiler: every dependency installs from a wheel and
# scikit-learn predicts the models. `--build-arg COMPILED_TREES=true` opts in to a
# gradient-boosting model's trees compiled to native code for bulk scoring (scoring.ml.compiled):
# the `compiled` extra, and gcc to build them where a model is trained (or first scored).
ARG COMPILED_TREES=false
ENV ML_COMPILED_TREES=${COMPILED_TREES}
RUN if [ "$COMPILED_TREES" = "true" ]; then \
        apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
        && rm -rf /var/lib/apt/lists/*; \
    fi
COPY pyproject.toml README.md ./
COPY leadscoring ./leadscoring
COPY scoring ./scoring
COPY integrations ./integrations
RUN if [ "$COMPILED_TREES" = "true" ]; then extras="[compiled]"; else extras=""; fi \
    && pip install --no-cache-dir --only-binary=:all: ".${extras}"
COPY . .
RUN useradd --create-home app && mkdir -p /app/var && chown -R app /app/var
USER app
EXPOSE 8000
CMD ["gunicorn", "leadscoring.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "4"]
