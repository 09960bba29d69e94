"""An awslambdaric handler for esmd's tests: `event["mode"]` picks what it does."""
import os
import time

COUNT = 0


def handler(event, context):
    global COUNT
    COUNT += 1
    mode = event.get("mode", "ok") if isinstance(event, dict) else "ok"
    print(f"mode={mode} count={COUNT} rid={context.aws_request_id}", flush=True)
    if mode == "err":
        raise ValueError("boom from python")
    if mode == "exit":
        os._exit(3)
    if mode == "sleep":
        # // sleep-ok: the "sleep" mode holds the invocation (timeouts, overlapping calls)
        time.sleep(event.get("s", 5))
    if mode == "spawn":
        # A grandchild that outlives nothing: killed with the environment's process group.
        pid = os.fork()
        if pid == 0:
            # // sleep-ok: a grandchild that must be killed with the environment's group
            time.sleep(600)
            os._exit(0)
        # // sleep-ok: the handler holds the invocation until the timeout kills the group
        time.sleep(event.get("s", 5))
        return {"child": pid}
    if mode == "big":
        return {"data": "x" * (7 * 1024 * 1024)}
    return {
        "ok": True,
        "count": COUNT,
        "pid": os.getpid(),
        "function_name": context.function_name,
        "memory": context.memory_limit_in_mb,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "echo": event,
    }
