"""hcm-ward-mqtt: wristbands and nurse handhelds speaking JSON over MQTT.

The reference ward-device plugin (one plugin per device vendor): band events and
handheld requests arrive over an MQTT broker and go into ``middleware.ward``; alarm
changes and confirmations go back to the bands and the nurse station. The wire format
and the simulator are in ``docs/ward.md`` of the hcmiddleware project.
"""

from __future__ import annotations

from hcm_ward_mqtt.plugin import NAME, WardMqtt, WardMqttSettings
from hcm_ward_mqtt.simulator import Simulator

__all__ = ["NAME", "Simulator", "WardMqtt", "WardMqttSettings"]
