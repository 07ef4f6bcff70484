"""The emulated bench: a virtual clock, the plant, every emulated instrument and the charger.

`start()` serves each instrument on a free loopback port or a fresh pseudo-terminal and returns
the rig file's sections with every "auto" replaced, so the rig opens the same drivers it would
open on a real bench. Several benches can run side by side (xdist workers).

If the environment variable RIG_SIM_JOURNAL names a file, every change of the rig-controlled
side of the plant (load, injector, supply, pilot) is appended to it as a JSON line. The harness's
own tests read it to prove the safe state was reached after the process was interrupted.
"""

from __future__ import annotations

import itertools
import json
import os

from rig.core.aio import LoopThread
from rig.core.clock import VirtualClock
from rig.sim.defects import lookup as lookup_defect
from rig.sim.plant import Plant
from rig.core.tempdirs import PrivateDir

EMULATED_SECTIONS = ("pilot", "meter", "load", "source", "injector", "led_sensor", "console", "central")
_bench_numbers = itertools.count()
#: where each documented service sits in the bench's own 127.a.b.0/24 (the unit's view of its network)
NETWORK_HOSTS = {"address": 1, "unit_address": 10, "dns_primary": 53, "dns_secondary": 54,
                 "cloudflare_primary": 111, "cloudflare_secondary": 112, "ocpp_address": 80,
                 "setup_address": 81, "ntp_address": 123}


class EmulatedBench:
    def __init__(self, rigfile, profile: dict, seed: int = 1, defect: str | None = None,
                 clock: VirtualClock | None = None, listen_host: str = "127.0.0.1",
                 listen_ports: dict[str, int] | None = None):
        self.rigfile, self.profile = rigfile, profile
        self.defect = lookup_defect(defect)
        self.clock = clock if clock is not None else VirtualClock(seed)
        # where the TCP instruments listen: loopback and free ports, unless `rig device serve` says
        self.listen_host, self.listen_ports = listen_host, dict(listen_ports or {})
        self.plant = Plant(self.clock, phases=profile["phases"])
        self.loop = LoopThread(f"bench-{rigfile.bench.name}")
        self.instruments: dict[str, object] = {}
        self.charger = None
        self.pin_factory = None
        self._journal = os.environ.get("RIG_SIM_JOURNAL")
        self.link = None  # rig.sim.charger_network.EmulatedLink, once the rig's network services run
        self._tmp = PrivateDir("bench-")  # private, and found by the next run if this one is killed

    # ------------------------------------------------------------------ start and stop
    def start(self) -> dict[str, dict]:
        from rig.sim.ac_load_sim import EmulatedAcLoad
        from rig.sim.ac_source_sim import EmulatedAcSource
        from rig.sim.charger import EmulatedCharger
        from rig.sim.console_sim import EmulatedConsole
        from rig.sim.gpio import BenchPinFactory, EmulatedPilotCircuit
        from rig.sim.injector_sim import EmulatedInjector
        from rig.sim.led_sensor_sim import EmulatedLedSensor
        from rig.sim.meter_server import EmulatedMeter

        self.loop.start()
        sections = {name: dict(self.rigfile.section(name)) for name in EMULATED_SECTIONS}
        sections["meter"]["model"] = "SDM630" if self.profile["phases"] == 3 else "SDM120"
        self.charger = EmulatedCharger(
            self.plant, self.clock, self.loop, self.profile, self.profile, self.rigfile.product.serial, self.defect
        )
        self.pin_factory = BenchPinFactory(self.clock)
        circuit = EmulatedPilotCircuit(self.plant, self.pin_factory, sections["pilot"])
        sections["pilot"] = circuit.start()  # the emulated ADC must sit on the SPI pins before the driver opens
        self.instruments["pilot"] = circuit
        servers = {
            "meter": EmulatedMeter(self.plant, self.loop, sections["meter"]),
            "load": EmulatedAcLoad(self.plant, self.loop, sections["load"]),
            "source": EmulatedAcSource(self.plant, self.loop, sections["source"]),
            "injector": EmulatedInjector(self.plant, self.loop, sections["injector"]),
            "led_sensor": EmulatedLedSensor(self.plant, self.loop, sections["led_sensor"], led=self.profile),
            "console": EmulatedConsole(self.plant, self.loop, sections["console"], self.charger.console),
        }
        for name, server in servers.items():
            if hasattr(server, "listen_host"):
                server.listen_host = self.listen_host
            if hasattr(server, "listen_port") and self.listen_ports.get(name):
                server.listen_port = self.listen_ports[name]
            if name == "meter" and self.listen_ports.get(name) and sections[name].get("transport") == "tcp":
                server.config["port"] = self.listen_ports[name]
            try:
                sections[name] = server.start()
            except OSError as exc:
                exc.instrument = name  # `rig device serve` names the port it could not have
                raise
            self.instruments[name] = server
        if "network" in self.rigfile.data:
            sections["network"] = self._network_section()
        if self._journal:
            self.plant.subscribe(self._write_journal)
        with self.plant.change("supply"):
            pass  # the supply is on from t = 0: the charger powers up and boots
        return sections

    def _network_section(self) -> dict:
        """The [network] section with "auto" filled: a 127.a.b.0/24 of this bench's own, free ports."""
        from rig.sim.charger_network import unit_password

        net = dict(self.rigfile.section("network"))
        index = (os.getpid() * 31 + next(_bench_numbers)) % 50000
        base = f"127.{20 + index // 256}.{index % 256}."
        for key, host in NETWORK_HOSTS.items():
            if net.get(key) == "auto":
                net[key] = base + str(host)
        if net.get("capture") == "auto":
            net["capture"] = os.path.join(self._tmp.name, "unit.pcap")
        if net.get("unit_password") == "auto":
            net["unit_password"] = unit_password(self.rigfile.charge_point_id)
        net["scan_control_address"] = base + "11"  # nothing binds it: ports open there are the host's own
        return net

    def connect_network(self, network, central_address: tuple[str, int], central_url: str) -> None:
        """Wire the emulated unit to the rig's network services: the link (routes and capture) and
        the unit's stack, with the rig CA as its trust anchor and the rig's firmware key (a unit
        in factory test mode). `central_url` is what the unit is commissioned with."""
        from rig.sim.charger_network import UnitNetwork
        from rig.sim.charger_network_firmware import attach_firmware_download
        from rig.sim.emulated_link import EmulatedLink

        net = network.config
        self.link = EmulatedLink(self.clock, self.loop, net["unit_address"], net["capture"],
                                 loopback_only=not getattr(network, "real_segment", False))
        self.link.set_routes(network.endpoints(central_address))
        charger = self.charger

        def set_rtc(when) -> None:
            charger.rtc_offset = when - self.clock.utc_now()

        with self.plant.lock:
            charger.net = UnitNetwork(
                self.clock, self.loop, self.link, self.plant.lock, self.rigfile.charge_point_id,
                network.ca.ca_pem, network.ca.firmware_public_pem, net["unit_password"],
                rtc_now=charger.rtc_now, set_rtc=set_rtc, alive=lambda: charger.powered,
                defect=self.defect.name if self.defect else None)
            charger.central_url = central_url
            if getattr(charger, "firmware", None) is not None:
                attach_firmware_download(charger.firmware, charger.net)

    def connect_charger(self, central_url: str) -> None:
        """Point the emulated unit at the rig's central system (its 'commissioning')."""
        with self.plant.lock:
            self.charger.central_url = central_url

    def stop(self) -> None:
        for server in self.instruments.values():
            stop = getattr(server, "stop", None) or getattr(server, "close", None)
            if stop is not None:
                try:
                    stop()
                except Exception:  # stopping the rest matters more than one server's complaint
                    pass
        if self.charger is not None and self.charger.client is not None:
            self.charger.client.close()
        if self.pin_factory is not None:
            self.pin_factory.close()
        self.loop.stop()
        if self.link is not None:
            self.link.close()
        self._tmp.cleanup()

    # ------------------------------------------------------------------ harness support
    def break_instrument(self, name: str, how: str | None) -> None:
        """Make an emulated instrument misbehave: "silent", "garbage", "disconnect", or None to heal."""
        self.instruments[name].fault = how

    def _write_journal(self, topic: str) -> None:
        p = self.plant
        line = {
            "t": self.clock.now(),
            "topic": topic,
            "load_on": p.load_on,
            "load_a": p.load_a,
            "injector_a": p.residual_dc_a(),
            "injector_on": p.injection.on,
            "supply_on": p.supply_on,
            "supply_v": p.supply_v,
            "cp_state": p.cp_state_letter(),
        }
        with open(self._journal, "a") as f:
            f.write(json.dumps(line) + "\n")
