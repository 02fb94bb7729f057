# SPDX-License-Identifier: Apache-2.0
"""gpuwarden for Nova's own PCI passthrough: the reconciler that frees
one-time-use GPU providers in Placement once gpuwardend's clean-up passed
(docs/nova.md)."""
