"""Measures esmd's CPU while 1,000 ReceiveMessage long polls (WaitTimeSeconds=20) wait on an
empty queue. Usage: start `esmd run` with a queue named `idle` on 127.0.0.1:19600, then
`python3 benches/idle_long_polls.py <esmd pid>`. Prints esmd's CPU seconds over 10 s."""
import asyncio
import json
import sys
import time

PID = sys.argv[1]
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 19600


def cpu():
    fields = open(f"/proc/{PID}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, CLK_TCK = 100


BODY = json.dumps({"QueueUrl": f"http://127.0.0.1:{PORT}/000000000000/idle",
                   "WaitTimeSeconds": 20, "MaxNumberOfMessages": 10}).encode()
REQUEST = (b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-amz-json-1.0\r\n"
           b"X-Amz-Target: AmazonSQS.ReceiveMessage\r\nContent-Length: "
           + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)


async def poll():
    reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
    writer.write(REQUEST)
    await writer.drain()
    data = await reader.read(4096)
    writer.close()
    return data


async def main():
    tasks = [asyncio.create_task(poll()) for _ in range(1000)]
    await asyncio.sleep(3)
    c0, t0 = cpu(), time.time()
    await asyncio.sleep(10)
    c1, t1 = cpu(), time.time()
    print(f"1000 idle long polls: esmd CPU {c1 - c0:.2f} s over {t1 - t0:.1f} s wall")
    answers = await asyncio.gather(*tasks)
    print("answered 200 OK:", sum(1 for a in answers if b"200 OK" in a))


asyncio.run(main())
