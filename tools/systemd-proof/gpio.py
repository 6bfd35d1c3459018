"""Drive gpio-sim lines through lgpio and through gpiozero (on its lgpio pin factory) and
read each level back from gpio-sim's own sysfs view of the line, inside the kiosk unit's
sandbox. gpiozero asks the board for a Raspberry Pi revision, which an x86 guest has
not: the factory below declares a Pi 4 (gpiozero 2.0 pins/local.py get_pi_revision)."""

import sys
import time
from pathlib import Path

import lgpio
from gpiozero import LED
from gpiozero.pins.lgpio import LGPIOFactory

PI_4B_REVISION = 0xC03111


class SimulatedPi4(LGPIOFactory):
    """lgpio's factory on the simulated chip, as a Pi 4's GPIO header."""

    def _get_revision(self) -> int:
        return PI_4B_REVISION


def level(sim: Path, line: int) -> int:
    return int((sim / f"sim_gpio{line}" / "value").read_text())


def main(chip: int, sim: Path) -> int:
    seen: list[tuple[str, int, int, int]] = []
    handle = lgpio.gpiochip_open(chip)
    lgpio.gpio_claim_output(handle, 17, 0)
    for value in (1, 0):
        lgpio.gpio_write(handle, 17, value)
        seen.append(("lgpio", 17, value, level(sim, 17)))
    lgpio.gpio_free(handle, 17)
    lgpio.gpiochip_close(handle)
    factory = SimulatedPi4(chip=chip)
    led = LED(27, pin_factory=factory)
    for on in (True, False):
        led.value = on
        time.sleep(0.05)
        seen.append(("gpiozero", 27, int(on), level(sim, 27)))
    led.close()
    factory.close()
    for library, line, wrote, read in seen:
        print(f"  {library} GPIO{line}: wrote {wrote}, gpio-sim reads {read}")
    return 0 if all(wrote == read for _, _, wrote, read in seen) else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), Path(sys.argv[2])))
