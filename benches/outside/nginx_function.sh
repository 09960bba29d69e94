# Sourced by run.sh and postgres.sh (after common.sh): the benchmark's function, nginx answering {} to every POST
# on a free loopback port. `start_nginx_function` needs `$work` (a scratch directory) and `pids`
# (the array of processes the script ends, by id); it sets `fn_port`. `wait_nginx_function`
# returns once nginx answers.
start_nginx_function() {
  fn_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$work/nginx"
  cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
error_log $work/nginx/error.log;
pid $work/nginx/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$fn_port;
    client_max_body_size 10m;
    client_body_buffer_size 1m;
    location / { default_type application/json; return 200 '{}'; }
  }
}
CONF
  nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
  pids+=($!)
}

wait_nginx_function() {
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$fn_port/" -d x >/dev/null && return 0
    sleep 0.05 # sleep-ok: waiting for nginx to listen
  done
  echo "nginx did not answer on port $fn_port" >&2
  return 1
}
