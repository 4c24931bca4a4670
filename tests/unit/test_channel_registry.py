"""The channel registry names exactly the channel kinds a receiver can have."""

from riffle.config.notifications import ReceiverSpec
from riffle.sinks.channels.registry import BUILDERS


def test_the_registry_has_a_builder_for_every_receiver_field() -> None:
    assert set(BUILDERS) == set(ReceiverSpec.model_fields) - {"name"}
