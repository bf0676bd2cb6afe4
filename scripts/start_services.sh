#!/usr/bin/env bash
# Start PostgreSQL, Redis and RabbitMQ if they are down (they are usually started with the machine).
# Also installs the Debian packages the browser tests need. Never fails the build by itself:
# tests that need a service that is still down fail with a message naming it.
set -u
have_port() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! have_port 5432 && command -v pg_ctlcluster >/dev/null; then
  echo "starting PostgreSQL"; pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
if ! have_port 6379 && command -v redis-server >/dev/null; then
  echo "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi
if ! have_port 5672 && command -v rabbitmq-server >/dev/null; then
  echo "starting RabbitMQ"; rabbitmq-server -detached || true
  for _ in $(seq 1 60); do have_port 5672 && break; sleep 1; done
fi
# chromium + driver for the browser tests; a CJK font so eval reports draw Chinese labels
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ] || ! fc-list :lang=zh 2>/dev/null | grep -q .; then
  echo "installing chromium, chromium-driver, fonts-wqy-microhei"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver fonts-wqy-microhei) \
    >/dev/null 2>&1 || echo "warning: could not install chromium / CJK font" >&2
fi
exit 0
