"""The entity every Forewarn feature is keyed by: one virtual machine."""

from feast import Entity, ValueType

instance = Entity(
    name="instance",
    join_keys=["instance_id"],
    value_type=ValueType.STRING,
    description="A virtual machine of the fleet.",
)
