"""The load benchmark's pinning (--load-pin): CPU lists as the kernel writes them, and a child
process, a forked load process and a redis-server really confined, as /proc reads it."""

import os
import sys

import pytest

from benchmarks import pinning
from benchmarks.harness import ContenderFailed
from benchmarks.loadworkers import WorkerPool

two_cpus = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="pinning needs Linux and 2 CPUs",
)


def test_cpu_lists_read_and_write_as_the_kernel_does():
    assert pinning.cpu_list({0, 2, 3, 4, 7}) == "0,2-4,7"
    assert pinning.parse_cpu_list("0,2-4,7\n") == {0, 2, 3, 4, 7}
    assert pinning.parse_cpu_list(pinning.cpu_list({1})) == {1}


@two_cpus
def test_split_gives_the_servers_one_cpu_and_the_clients_the_rest():
    split = pinning.Pinning.split()
    assert len(split.servers) == 1
    assert split.servers.isdisjoint(split.clients)
    assert split.servers | split.clients == os.sched_getaffinity(0)


@two_cpus
def test_a_child_runs_on_the_client_cpus_only():
    cpus = pinning.Pinning.split().clients
    argv = [sys.executable, "-c", "import os, time; time.sleep(0.2); print(sorted(os.sched_getaffinity(0)))"]  # fmt: skip
    completed, checked = pinning.run(argv, cpus)
    assert completed.stdout.strip() == str(sorted(cpus))
    assert checked.endswith(f"Cpus_allowed_list {pinning.cpu_list(cpus)}")


@two_cpus
def test_the_load_processes_run_on_the_cpus_given():
    cpus = pinning.Pinning.split().clients
    pool = WorkerPool(2, lambda index: index, cpus=cpus)
    try:
        for pid in pool.pids:
            assert pinning.allowed(pid) and all(m == cpus for m in pinning.allowed(pid).values())
    finally:
        pool.close()


@two_cpus
def test_check_refuses_a_process_left_unpinned():
    with pytest.raises(ContenderFailed, match="is not pinned"):
        pinning.check(os.getpid(), pinning.Pinning.split().servers)


@two_cpus
def test_a_benchmark_redis_server_has_every_thread_on_the_server_cpu():
    from benchmarks import targets

    split = pinning.Pinning.split()
    with targets.standalone_server(split) as target:
        assert target.nodes[0].ping()
        lines = target.check_pinned()
        assert (
            len(lines) == 1 and f"Cpus_allowed_list {pinning.cpu_list(split.servers)}" in lines[0]
        )
        threads = pinning.allowed(target.server_pids[0])
        assert len(threads) > 1 and all(mask == split.servers for mask in threads.values())
