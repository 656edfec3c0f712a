FROM python:3.11-slim
WORKDIR /app
# Templates and config are read from the source tree, so the package is installed in place.
COPY . .
RUN pip install --no-cache-dir -e . && rm -rf tests bench
# Secrets (HERALD_TOKEN_*, HERALD_SMTP__PASSWORD, HERALD_TWILIO__AUTH_TOKEN, HERALD_ACK__SECRET)
# come from the environment at run time, never from the image.
ENV HERALD_SERVER__HOST=0.0.0.0 \
    HERALD_DATABASE__URL=sqlite+aiosqlite:////data/herald.db
VOLUME /data
EXPOSE 8080
CMD ["herald", "serve"]
