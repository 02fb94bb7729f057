# SPDX-License-Identifier: Apache-2.0
"""gpuwarden's OpenStack Cyborg driver (the shim between cyborg-agent and gpuwardend)."""
