"""A small closed-loop HTTP load generator: N connections, each sending the next request as
soon as the previous answer arrives (keep-alive, raw asyncio streams, little client CPU).

    python benchmarks/loadgen.py URL --body FILE --concurrency 32 --seconds 10 [--token T]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse


@dataclass
class Result:
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def quantile_ms(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    @property
    def failed(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200)

    def to_dict(self) -> dict:
        return {
            "requests": self.requests,
            "rps": round(self.throughput, 1),
            "p50_ms": round(self.quantile_ms(0.5), 2),
            "p99_ms": round(self.quantile_ms(0.99), 2),
            "failed": self.failed,
            "statuses": self.statuses,
        }


async def _connection(host: str, port: int, request: bytes, until: float, warm_until: float, result: Result) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            started = time.perf_counter()
            if started >= until:
                return
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            done = time.perf_counter()
            if started >= warm_until:
                status = int(status_line.split()[1])
                result.statuses[status] = result.statuses.get(status, 0) + 1
                result.latencies.append(done - started)
    finally:
        writer.close()


def run(url: str, body: bytes, concurrency: int, seconds: float, token: str = "", warmup: float = 1.0) -> Result:
    """Closed-loop load for warmup + seconds; only requests started after the warm-up count."""
    target = urlparse(url)
    headers = [
        f"POST {target.path} HTTP/1.1",
        f"Host: {target.hostname}:{target.port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if token:
        headers.append(f"Authorization: Bearer {token}")
    request = ("\r\n".join(headers) + "\r\n\r\n").encode() + body

    async def main() -> Result:
        start = time.perf_counter()
        result = Result(seconds)
        await asyncio.gather(
            *[
                _connection(target.hostname, target.port, request, start + warmup + seconds, start + warmup, result)
                for _ in range(concurrency)
            ]
        )
        return result

    return asyncio.run(main())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--body", required=True, help="JSON file to POST")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--token", default="")
    args = parser.parse_args()
    with open(args.body, "rb") as f:
        outcome = run(args.url, f.read(), args.concurrency, args.seconds, args.token)
    print(json.dumps(outcome.to_dict()))
