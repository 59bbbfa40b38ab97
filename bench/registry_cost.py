"""What the registry costs the success path: the worker resolves its endpoint on every
attempt (through `EndpointCache`), and the publisher checks the endpoint on every publish.

Measured in process CPU (the database driver's thread included), on the bench's own
registry, right after the throughput rounds:

- a cache hit (what almost every attempt costs: the value is fresh for the TTL);
- a database read (`EndpointRegistry.resolve`: endpoint row, secrets, decryption), which
  the worker makes once per endpoint per TTL;
- the publisher's check (`EndpointRegistry.deliverable`), one per publish;
- the fan-out's lookup (`EndpointRegistry.subscribers`), one per `publish_event`.

Per delivery: hit + read / (TTL x deliveries/s per endpoint) on the worker side, and one
check on the publisher side.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from activities.endpoint_cache import EndpointCache
from webhooks.registry.service import EndpointRegistry

HITS = 20_000
READS = 300


@dataclass(frozen=True)
class RegistryCost:
    hit_us: float
    read_ms: float
    publish_check_ms: float
    fan_out_lookup_ms: float

    def worker_ms_per_delivery(self, ttl: float, deliveries_per_s: float) -> float:
        reads_per_delivery = 1 / max(1.0, ttl * deliveries_per_s)
        return self.hit_us / 1000 + self.read_ms * reads_per_delivery


async def measure(registry: EndpointRegistry, endpoint_id: str, ttl: float) -> RegistryCost:
    cache = EndpointCache(registry, ttl=3600)
    await cache.endpoint(endpoint_id)
    t0 = time.process_time()
    for _ in range(HITS):
        await cache.endpoint(endpoint_id)
    hit = (time.process_time() - t0) / HITS
    t0 = time.process_time()
    for _ in range(READS):
        await registry.resolve(endpoint_id)
    read = (time.process_time() - t0) / READS
    t0 = time.process_time()
    for _ in range(READS):
        await registry.deliverable(endpoint_id)
    check = (time.process_time() - t0) / READS
    account = (await registry.get(endpoint_id)).account_id
    t0 = time.process_time()
    for _ in range(READS):
        await registry.subscribers(account, "bench.tick")
    fan_out = (time.process_time() - t0) / READS
    return RegistryCost(
        hit_us=hit * 1e6,
        read_ms=read * 1000,
        publish_check_ms=check * 1000,
        fan_out_lookup_ms=fan_out * 1000,
    )
