"""Open device nodes the way the kiosk does, inside the kiosk unit's own sandbox (run by
guest.sh as a copy of kiosk.service): each PATH=ok must open read-write, each PATH=refused
must fail. Prints one line per node; exits 1 when any node did not behave as expected."""

import grp
import os
import pwd
import stat
import sys


def main(expectations: list[str]) -> int:
    wrong = 0
    for item in expectations:
        path, expected = item.rsplit("=", 1)
        try:
            os.close(os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK))
            outcome = "ok"
            detail = "opened"
        except OSError as exc:
            outcome = "refused"
            detail = f"{os.strerror(exc.errno or 0)} (errno {exc.errno})"
        wrong += outcome != expected
        info = os.stat(path)
        owner = f"{pwd.getpwuid(info.st_uid).pw_name}:{grp.getgrgid(info.st_gid).gr_name}"
        print(f"  {path} ({owner} {stat.S_IMODE(info.st_mode):o}): {detail}"
              f"{'' if outcome == expected else '  <- expected ' + expected}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
