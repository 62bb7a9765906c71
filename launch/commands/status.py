"""`status`: what this project runs in the region and what it costs, found by the launcher's tags.

Endpoints with their instances (or serverless memory), age, price per hour and cost so far; training,
tuning and transform jobs that are running or recent (`status_days`); models and endpoint configs that no
endpoint serves. Prices: `conf/launch/prices.yaml` and the instance configs (`launch.prices`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from launch import inventory, prices
from launch.command import Command
from launch.inventory import Found


def money(value: float | None, missing: str = "price unknown (add it to conf/launch/prices.yaml)") -> str:
    return missing if value is None else f"${value:,.2f}"


def endpoint_caveat(endpoint: Found) -> str:
    """ "(unverified)" when any of the endpoint's instance prices is (`launch.prices.caveat`)."""
    types = [v["InstanceType"] for v in inventory.variants(endpoint) if not v["ServerlessConfig"]]
    return next((c for c in map(prices.caveat, types) if c), "")


def endpoint_line(endpoint: Found) -> str:
    """`name  status  what it runs on  age  $/h  $ so far  [past its time]`."""
    parts = []
    for v in inventory.variants(endpoint):
        serverless = v["ServerlessConfig"]
        if serverless:
            memory = serverless["MemorySizeInMB"]
            parts.append(
                f"serverless {memory} MB × up to {serverless['MaxConcurrency']} "
                f"(${prices.serverless_per_second(memory):.6f}/s per request in flight"
                f"{prices.caveat(prices.SERVERLESS)}, $0 idle)"
            )
        else:
            parts.append(f"{v['InstanceType']} × {v['Count']}")
    age = inventory.hours(endpoint.created)
    hourly = inventory.endpoint_hourly(endpoint)
    cost = money(hourly) + "/h" + endpoint_caveat(endpoint) if hourly is not None else money(None)
    so_far = "" if hourly is None else f", {money(hourly * age)} so far"
    line = f"  {endpoint.name}  {endpoint.status}  {', '.join(parts)}  age {age:.1f} h  {cost}{so_far}"
    late = inventory.overdue(endpoint)
    if late is not None:
        line += f"  PAST ITS TIME by {late:.1f} h: {inventory.cleanup_hint(endpoint.name)}"
    return line


def job_line(job: Found) -> str:
    """`kind name  status  instances  [$/h while running]  $ so far (basis)`; a tuning job's basis is its
    trials' lines, and a trial names its tuning job."""
    instance_type, count = inventory.job_resources(job)
    hourly, so_far = inventory.job_cost(job)
    price = inventory.job_price(job)
    # training prices come from conf/launch/instance/*.yaml, which names no source for them
    caveat = prices.caveat(instance_type) if job.kind == "transform" else " (unverified)"
    basis = "" if price is None else f" at ${price}/h{caveat}"
    running = f"{money(hourly)}/h, " if job.status in inventory.RUNNING and hourly is not None else ""
    head = f"  {job.kind} {job.name}  {job.status}  {instance_type} × {count}"
    if job.kind == "tuning":
        trials = inventory.trials_at_once(job)
        bound = (
            ""
            if price is None or job.status not in inventory.RUNNING
            else f"≤ {money(price * count * trials)}/h, "
        )
        return (
            f"{head} per trial{basis}, up to {trials} trials at once  {bound}"
            "cost so far: on its trials' training lines (they carry its tags)"
        )
    tuning = job.detail.get("TuningJobArn")
    trial = f"  trial of {tuning.rsplit('/', 1)[-1]}" if tuning else ""
    return f"{head}{basis}  {running}{money(so_far)} so far{trial}"


def report(found: list[Found], days: float) -> list[str]:
    """The listing, section by section, with the totals."""
    endpoints = [f for f in found if f.kind == "endpoint"]
    jobs = [f for f in found if f.kind in inventory.JOBS]
    configs, models = inventory.in_use(found)
    orphans = [
        f
        for f in found
        if (f.kind == "model" and f.name not in models)
        or (f.kind == "endpoint-config" and f.name not in configs)
    ]
    lines = [f"endpoints ({len(endpoints)}):", *(endpoint_line(e) for e in endpoints)]
    lines += [f"jobs running or from the last {days:g} days ({len(jobs)}):", *(job_line(j) for j in jobs)]
    lines += [f"models and endpoint configs without an endpoint ({len(orphans)}):"]
    lines += [f"  {f.kind} {f.name}  created {f.created:%Y-%m-%d %H:%M}" for f in orphans]
    hourly = sum(inventory.endpoint_hourly(e) or 0 for e in endpoints)
    hourly += sum(inventory.job_cost(j)[0] or 0 for j in jobs if j.status in inventory.RUNNING)
    so_far = sum((inventory.endpoint_hourly(e) or 0) * inventory.hours(e.created) for e in endpoints)
    so_far += sum(inventory.job_cost(j)[1] or 0 for j in jobs)
    lines.append(f"total: {money(hourly)}/h now; {money(so_far)} so far for what is listed")
    if found:
        lines.append("delete them: python launch/sagemaker.py cleanup=all (or cleanup=<name>)")
    return lines


def send(cfg: DictConfig, boto: Any, requests: Any, run_dir: Path) -> str:
    """List and price; sends only List/Describe requests."""
    print("\n".join(report(inventory.find(boto, cfg.prefix, recent_days=cfg.status_days), cfg.status_days)))
    return ""


COMMAND = Command(key="status", usage="status", send=send, bare=True)
