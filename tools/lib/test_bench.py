#!/usr/bin/env python3
"""Unit tests of tools/lib/bench.py's bookkeeping: which runs count and when the benchmark
fails. The measured commands are stand-ins (true, a command that always fails, one that fails
every other time), so a test takes a second, needs no root, no image and no imgboot — only
hyperfine for the hyperfine groups (skipped, with the reason, when it is missing).

    python3 -m unittest discover -s tools/lib -p 'test_*.py'     (tools/test runs this)
"""

import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

HAS_HYPERFINE = shutil.which("hyperfine") is not None


class StubUdevd:
    def ensure(self, _bench):
        pass


class FakeBench(bench.Bench):
    """A Bench without the machine: no images, no udevd, stand-in commands. `parallel_cmds`
    maps a tool to a function (i -> argv) for the i-th container of a batch."""

    SETTLE = ["true"]

    def __init__(self, rounds=2, runs=3, warmup=1):
        self.work = tempfile.mkdtemp(prefix="imgboot-bench-test.")
        self.udevd = StubUdevd()
        self.rounds, self.runs, self.warmup = rounds, None, warmup
        self.default_runs = runs
        self.parallel_levels = [1, 2]
        self.parallel_rounds = 1
        self.failures, self.notes, self.commands = [], [], {}
        self.result = {"groups": [], "parallel": [], "failures": self.failures, "notes": self.notes}
        self.parallel_cmds = {}

    def cmd_run(self, image, mode, machine="bench", users=None):
        return self.parallel_cmds["imgboot"](int(machine.rsplit("-", 1)[1]))

    def cmd_nspawn(self, image, mode, machine=None, userns=False):
        return self.parallel_cmds["systemd-nspawn"](int(machine.rsplit("-", 1)[1]))


class BenchTests(unittest.TestCase):
    def setUp(self):
        # bench's progress lines would bury unittest's report
        self.log, bench.log = bench.log, lambda msg="": None
        self.addCleanup(setattr, bench, "log", self.log)
        self.b = FakeBench()
        self.addCleanup(shutil.rmtree, self.b.work, True)
        # a command that fails on every second run: it counts its runs in a file
        self.counter = os.path.join(self.b.work, "count")
        self.flaky = ["sh", "-c", f'n=$(cat {self.counter} 2>/dev/null || echo 0); '
                      f'echo $((n + 1)) > {self.counter}; test $((n % 2)) = 0 || {{ echo flaky >&2; exit 4; }}']

    def group(self, entries):
        ok = self.b.group("g", entries, self.b.default_runs)
        return ok, {c["id"]: c for c in self.b.result["groups"][-1]["commands"]}

    @unittest.skipUnless(HAS_HYPERFINE, "hyperfine is not installed (tools/bench installs it)")
    def test_all_succeed(self):
        ok, cs = self.group([("a", "imgboot", ["true"]), ("b", "systemd-dissect", ["true"])])
        self.assertTrue(ok)
        self.assertEqual(self.b.failures, [])
        self.assertEqual(self.b.notes, [])
        # warm-up runs are not counted: rounds x runs
        self.assertEqual(cs["a"]["runs"], 2 * 3)
        self.assertEqual(cs["a"]["failedRuns"], 0)
        self.assertIsNotNone(cs["a"]["median"])

    @unittest.skipUnless(HAS_HYPERFINE, "hyperfine is not installed (tools/bench installs it)")
    def test_failing_imgboot_command_fails_the_benchmark(self):
        ok, cs = self.group([("good", "imgboot", ["true"]),
                             ("bad", "imgboot", ["sh", "-c", "echo broken image >&2; exit 125"])])
        self.assertFalse(ok)
        self.assertEqual(len(self.b.failures), 1, self.b.failures)
        message = self.b.failures[0]["message"]
        self.assertIn("4 of 4 runs failed (exit 125)", message)
        self.assertIn("run again alone: exit 125: broken image", message)
        # every run failed: dropped after round 1, no time counted
        self.assertTrue(cs["bad"]["failed"])
        self.assertEqual(cs["bad"]["runs"], 0)
        self.assertIsNone(cs["bad"]["median"])
        self.assertEqual(cs["bad"]["failedExitStatuses"], [125] * 4)
        # the other command is measured as usual
        self.assertEqual(cs["good"]["runs"], 6)

    @unittest.skipUnless(HAS_HYPERFINE, "hyperfine is not installed (tools/bench installs it)")
    def test_flaky_imgboot_command_fails_and_only_successes_count(self):
        self.b.rounds = 1
        ok, cs = self.group([("flaky", "imgboot", self.flaky)])
        self.assertFalse(ok)
        # 1 warm-up + 3 runs: ok, failed, ok, failed; run 5 (alone) is ok
        self.assertEqual(cs["flaky"]["failedExitStatuses"], [4, 4])
        self.assertEqual(len(self.b.failures), 1, self.b.failures)
        self.assertIn("2 of 4 runs failed (exit 4) in round 1; run again alone: exit 0", self.b.failures[0]["message"])
        self.assertFalse(cs["flaky"]["failed"])  # it still succeeds: not dropped
        # counted: the one run after the warm-up that exited 0
        self.assertEqual(cs["flaky"]["runs"], 1)
        self.assertEqual(len(cs["flaky"]["times"]), 1)

    @unittest.skipUnless(HAS_HYPERFINE, "hyperfine is not installed (tools/bench installs it)")
    def test_failing_warmup_is_a_failure(self):
        b = FakeBench(rounds=1, runs=1, warmup=1)
        self.addCleanup(shutil.rmtree, b.work, True)
        self.b = b
        # fails the first time only: in the warm-up
        first = ["sh", "-c", f'test -e {b.work}/ran && exit 0; touch {b.work}/ran; exit 3']
        ok, cs = self.group([("x", "imgboot", first)])
        self.assertFalse(ok)
        self.assertEqual(len(b.failures), 1)
        self.assertIn("1 of 2 runs failed (exit 3)", b.failures[0]["message"])
        self.assertEqual(cs["x"]["runs"], 1)

    @unittest.skipUnless(HAS_HYPERFINE, "hyperfine is not installed (tools/bench installs it)")
    def test_failing_reference_is_a_note_and_not_measured(self):
        self.b.rounds = 1
        ok, cs = self.group([("ours", "imgboot", ["true"]), ("theirs", "systemd-nspawn", self.flaky)])
        self.assertFalse(ok)
        self.assertEqual(self.b.failures, [])
        self.assertEqual(len(self.b.notes), 1, self.b.notes)
        self.assertEqual(cs["theirs"]["runs"], 1)
        self.assertEqual(cs["theirs"]["failedRuns"], 2)
        self.assertEqual(cs["ours"]["runs"], 3)

    def test_parallel_counts_only_successful_runs(self):
        b = self.b
        # container 0 of a batch succeeds, container 1 fails at once
        b.parallel_cmds["systemd-nspawn"] = lambda i: ["true"] if i == 0 else ["false"]
        b.parallel("systemd-nspawn")
        rows = {r["containers"]: r for r in b.result["parallel"]}
        self.assertEqual(b.failures, [])
        self.assertEqual(len(b.notes), 1, b.notes)  # level 2 only
        self.assertEqual(rows[1]["failures"], 0)
        self.assertEqual(rows[2]["runs"], 8)
        self.assertEqual(rows[2]["failures"], 4)
        self.assertEqual(rows[2]["succeeded"], 4)
        self.assertAlmostEqual(rows[2]["runsPerSecond"], 4 / rows[2]["totalWall"])

    def test_parallel_imgboot_failure_fails_the_benchmark(self):
        b = self.b
        b.parallel_cmds["imgboot"] = lambda i: ["sh", "-c", "exit 125"] if i == 1 else ["true"]
        b.parallel("imgboot")
        self.assertEqual(len(b.failures), 1, b.failures)
        self.assertIn("4 of 8 failed", b.failures[0]["message"])

    def test_parallel_all_failed_has_no_throughput(self):
        b = self.b
        b.parallel_cmds["systemd-nspawn"] = lambda i: ["false"]
        b.parallel("systemd-nspawn")
        for row in b.result["parallel"]:
            self.assertEqual(row["runsPerSecond"], 0)
            self.assertIsNone(row["speedup"])

    def test_table_says_what_runs_per_second_counts(self):
        b = self.b
        b.parallel_cmds["imgboot"] = lambda i: ["true"]
        b.parallel("imgboot")
        res = {"tools": {"imgboot": "x", "systemd": "y"}, "commit": "c", "date": "d", "quick": False,
               "machine": {"cpu": "cpu", "cores": 2, "memTotalKiB": 1024, "kernel": "k", "os": "os",
                           "loadavgStart": [0, 0, 0], "loadavgEnd": [0, 0, 0]},
               "comparisons": [], "scaling": [], "parallel": b.result["parallel"], "memory": {},
               "stages": {}, "notes": [], "failures": []}
        text = bench.table(res)
        self.assertIn("ok runs/s", text)
        self.assertIn("containers that exited 0", text)


if __name__ == "__main__":
    unittest.main()
