"""gpuwarden's OpenStack Cyborg driver (the shim between cyborg-agent and gpuwardend)."""
