"""The inventory (libgpuwarden, through its public C API with ctypes) against the real openstack-cyborg
and openstack-placement packages: addresses byte for byte as Cyborg's pci_str_to_json(), the product
trait as Cyborg's own NVIDIA driver makes it, every trait valid for Placement, the generation recomputed
independently, and every device profile in docs/placement.md accepted by Cyborg's validation and
served by the inventory it is written for.
"""
import ctypes
import hashlib
import json
import os
import pathlib
import re
import warnings

import jsonschema
import pytest

TOP = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("GW_BUILD_DIR", TOP / "build"))
DOC = (TOP / "docs" / "placement.md").read_text()

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from cyborg import objects as cyborg_objects

    cyborg_objects.register_all()   # the API controllers read the object classes at import

    from cyborg.accelerator.common.utils import pci_str_to_json
    from cyborg.accelerator.drivers.gpu.nvidia import sysinfo as nvidia_sysinfo
    from cyborg.api.controllers.v2.device_profiles import DeviceProfilesController
    from cyborg.common import exception as cyborg_exception
    import os_traits
    from placement.schemas import trait as placement_trait

ALLOCATABLE, QUARANTINED, ATTACHED = 2, 4, 3
PER_GPU, PER_CLIQUE = 0, 1


class Gpu(ctypes.Structure):
    _fields_ = [("address", ctypes.c_char_p), ("vendor_id", ctypes.c_uint16), ("device_id", ctypes.c_uint16),
                ("numa_node", ctypes.c_int), ("clique", ctypes.c_int), ("state", ctypes.c_int),
                ("attached", ctypes.c_bool), ("class_code", ctypes.c_uint16), ("model", ctypes.c_char_p)]


class Options(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint), ("host", ctypes.c_char_p), ("model", ctypes.c_int),
                ("extra_traits", ctypes.POINTER(ctypes.c_char_p)), ("n_extra_traits", ctypes.c_size_t),
                ("clique_override", ctypes.c_void_p), ("previous", ctypes.c_void_p)]


@pytest.fixture(scope="module")
def lib():
    path = BUILD / "libgpuwarden.so"
    if not path.exists():
        pytest.fail(f"{path} missing: build first (GW_BUILD_DIR)")
    lib = ctypes.CDLL(str(path))
    lib.gw_inventory_new.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(Gpu), ctypes.c_size_t,
                                     ctypes.POINTER(Options)]
    lib.gw_inventory_to_json.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.gw_inventory_free.argtypes = [ctypes.c_void_p]
    lib.gw_inventory_generation.argtypes = [ctypes.c_void_p]
    lib.gw_inventory_generation.restype = ctypes.c_uint64
    lib.gw_error_message.restype = ctypes.c_char_p
    return lib


def inventory(lib, gpus, host="compute-1", model=PER_GPU, extra=()):
    arr = (Gpu * len(gpus))(*[Gpu(a.encode(), v, d, n, c, s, False, 0x0300, b"X") for a, v, d, n, c, s in gpus])
    ex = (ctypes.c_char_p * max(1, len(extra)))(*[t.encode() for t in extra])
    opts = Options(1, host.encode(), model, ex, len(extra), None, None)
    inv = ctypes.c_void_p()
    if lib.gw_inventory_new(ctypes.byref(inv), arr, len(gpus), ctypes.byref(opts)) < 0:
        raise RuntimeError(lib.gw_error_message().decode())
    out = ctypes.c_void_p()
    assert lib.gw_inventory_to_json(inv, ctypes.byref(out)) == 0
    text = ctypes.string_at(out).decode()
    ctypes.CDLL(None).free(out)
    generation = lib.gw_inventory_generation(inv)
    lib.gw_inventory_free(inv)
    doc = json.loads(text)
    assert doc["generation"] == generation
    return doc


# The 8x Quadro RTX 5000 host of docs/placement.md: two PEX 9797 switches, NUMA node 0.
SM8 = [(f"0000:{b}:00.0", 0x10de, 0x1eb0, 0, 0 if b < "30" else 1, ALLOCATABLE)
       for b in ("1a", "1c", "1d", "1e", "3d", "3f", "40", "41")]
ODD = [("0000:3b:00.0", 0x10de, 0x1eb8, 1, -1, ALLOCATABLE), ("0001:b3:1f.7", 0x10de, 0x20b5, -1, -1, ATTACHED),
       ("ffff:ff:00.1", 0x1002, 0x74a1, 3, -1, ALLOCATABLE), ("0000:00:02.0", 0x8086, 0x56c0, 0, -1, ALLOCATABLE)]


@pytest.mark.parametrize("model", [PER_GPU, PER_CLIQUE])
@pytest.mark.parametrize("gpus", [SM8, ODD], ids=["sm8", "odd"])
def test_addresses_are_cyborgs_json(lib, gpus, model):
    doc = inventory(lib, gpus, model=model)
    seen = []
    for d in doc["deployables"]:
        assert d["device"]["controlpath"] == {"type": "PCI", "info": pci_str_to_json(d["gpus"][0])}
        assert [h["info"] for h in d["attach_handles"]] == [pci_str_to_json(a) for a in d["gpus"]]
        assert all(h["type"] == "PCI" for h in d["attach_handles"])
        seen += d["gpus"]
    assert sorted(seen) == sorted(g[0] for g in gpus)


def test_product_trait_is_cyborgs(lib):
    doc = inventory(lib, [("0000:af:00.0", 0x10de, 0x1eb8, -1, -1, ALLOCATABLE),
                          ("0000:b0:00.0", 0x10de, 0x15f7, -1, -1, ALLOCATABLE)])
    for d, pid in zip(doc["deployables"], ("1eb8", "15f7")):
        assert d["traits"] == nvidia_sysinfo._get_traits("10de", pid)["traits"]
        assert d["driver_name"] == "NVIDIA"
        assert d["name"] == "compute-1_" + d["gpus"][0]


@pytest.mark.parametrize("model", [PER_GPU, PER_CLIQUE])
def test_traits_are_valid_for_placement(lib, model):
    doc = inventory(lib, SM8 + ODD[1:], model=model, extra=("CUSTOM_RACK_7",))
    standard = set(os_traits.get_traits())
    for d in doc["deployables"]:
        jsonschema.validate({"traits": d["traits"], "resource_provider_generation": 0},
                            placement_trait.SET_TRAITS_FOR_RP_SCHEMA)
        for t in d["traits"]:
            if t.startswith("CUSTOM_"):
                jsonschema.validate(t, placement_trait.CUSTOM_TRAIT)
            else:
                assert t in standard, t
        assert d["traits"][0] == "OWNER_CYBORG" and d["traits"][-1] == "CUSTOM_RACK_7"


def test_generation_recomputed_independently(lib):
    doc = inventory(lib, SM8, model=PER_CLIQUE)
    content = {k: v for k, v in doc.items() if k != "generation"}
    canon = "gpuwarden-inventory-1\n" + json.dumps(content, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canon.encode()).digest()
    assert doc["generation"] == int.from_bytes(digest[:8], "big") >> 11
    assert 0 < doc["generation"] < 2 ** 53


# ---- docs/placement.md ----------------------------------------------------------------------------

PROFILE = re.compile(r"^openstack accelerator device profile create (\S+) '([^']*)'$", re.M)
FLAVOR_SET = re.compile(r"^openstack flavor set (.*) (\S+)$", re.M)


def doc_sections():
    """The doc's model sections: (model, text)."""
    per_gpu = DOC.index("## Per-GPU model")
    per_clique = DOC.index("## Per-clique model")
    after = DOC.index("## What Nova asks Placement")
    return [(PER_GPU, DOC[per_gpu:per_clique]), (PER_CLIQUE, DOC[per_clique:after])]


def candidates(doc, groups):
    """Whether the inventory can serve every group, one provider per group unit as Placement does
    (a group needs one provider with enough free units and all its required traits; different
    groups take units from the free pool, so two groups may not share a single-unit provider)."""
    free = {d["name"]: d["num_accelerators"] - d["reserved"] for d in doc["deployables"]}
    traits = {d["name"]: set(d["traits"]) for d in doc["deployables"]}

    def fit(i):
        if i == len(groups):
            return True
        g = groups[i]
        need = sum(int(v) for k, v in g.items() if k == "resources:PGPU")
        req = {k[len("trait:"):] for k, v in g.items() if k.startswith("trait:") and v == "required"}
        for name in free:
            if free[name] >= need and req <= traits[name]:
                free[name] -= need
                if fit(i + 1):
                    return True
                free[name] += need
        return False

    return fit(0)


def test_doc_has_both_models_and_both_requests():
    for model, text in doc_sections():
        names = PROFILE.findall(text)
        assert len(names) == 2, (model, names)
        for name, _ in names:
            sets = [m for m in FLAVOR_SET.findall(text) if f"accel:device_profile={name}" in m[0]]
            assert len(sets) == 1, name


@pytest.mark.parametrize("model,name,groups", [
    (model, name, json.loads(body)) for model, text in doc_sections() for name, body in PROFILE.findall(text)])
def test_doc_profiles(lib, model, name, groups):
    # Cyborg's own validation of a device profile POST.
    DeviceProfilesController()._validate_post_request({"name": name, "groups": groups})
    # The JSON block shown above the command is the same profile.
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", DOC, re.S)]
    assert groups in blocks
    # Served by the documented host in that model, and not any more once the GPUs it needs are gone.
    doc = inventory(lib, SM8, model=model)
    assert candidates(doc, groups)
    quarantined = [(a, v, d, n, c, QUARANTINED if c == 0 else s) for a, v, d, n, c, s in SM8]
    narrowed = inventory(lib, quarantined, model=model)
    wants_clique0 = any(g.get("trait:CUSTOM_GPU_CLIQUE_0") == "required" for g in groups)
    assert candidates(narrowed, groups) is not wants_clique0
    if len(groups) > 1:
        flavor = [m for m in FLAVOR_SET.findall(DOC) if f"accel:device_profile={name}" in m[0]][0]
        assert "--property group_policy=" in flavor[0]


def test_cyborg_rejects_what_the_doc_warns_about():
    with pytest.raises(cyborg_exception.InvalidParameterValue):
        DeviceProfilesController()._validate_post_request(
            {"name": "x", "groups": [{"resources:PGPU": "1", "trait:OWNER_CYBORG": "required"}]})
