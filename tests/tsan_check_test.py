#!/usr/bin/python3
"""scripts/tsan_check.py's rules on real reports (tests/data/tsan): the loader's own
DTV race is excused whoever called into the loader; the same race with one access made
by coe's code is not."""
import os
import sys
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import tsan_check  # noqa: E402


def check(name):
    with open(os.path.join(ROOT, "tests", "data", "tsan", name)) as f:
        return tsan_check.check_text(f.read(), tsan_check.listed_libraries())


class TsanCheck(unittest.TestCase):
    def test_loader_dtv_race_under_a_coe_caller_is_excused(self):
        # CI stop 29: free <- _dl_deallocate_tls against malloc <- allocate_dtv_entry
        # <- tls_get_addr_tail, the latter called under coe::GrpcFrontend::Stop.
        excused, failures = check("loader_dtv_under_coe_caller.txt")
        self.assertEqual(len(excused), 1)
        self.assertEqual(excused[0][0], "ld-linux-x86-64.so.2")
        self.assertEqual(failures, [])

    def test_coe_code_touching_loader_memory_fails(self):
        excused, failures = check("coe_frees_loader_memory.txt")
        self.assertEqual(excused, [])
        self.assertEqual(len(failures), 1)


if __name__ == "__main__":
    unittest.main()
