"""What Nova's scheduler sends Placement for a flavor with
``accel:device_profile``, from its code (Nova is not run): the
GET /allocation_candidates query and the claim's versions. Used by
tests/python/test_e2e_placement.py and tests/bench/placement_fleet.py."""

import urllib.parse

# nova/scheduler/client/report.py: get_allocation_candidates() and
# claim_resources() use ROOT_REQUIRED_VERSION; the claim first reads the
# consumer at CONSUMER_GENERATION_VERSION and sends consumer_generation None
# for a new instance.
NOVA_AC_VERSION = '1.35'
NOVA_CONSUMER_VERSION = '1.28'
# [scheduler] max_placement_results default.
NOVA_LIMIT = 1000
# nova/scheduler/request_filter.py: accelerators_filter (a flavor with
# accel:device_profile) adds root_required COMPUTE_ACCELERATORS;
# compute_status_filter adds root_forbidden COMPUTE_STATUS_DISABLED.
NOVA_ROOT = 'COMPUTE_ACCELERATORS,!COMPUTE_STATUS_DISABLED'
# The flavor's own resources, in the unsuffixed group.
FLAVOR = {'VCPU': 8, 'MEMORY_MB': 16384, 'DISK_GB': 40}


def nova_query(groups, group_policy=None, limit=NOVA_LIMIT):
    """The query string of Nova's GET /allocation_candidates for a flavor
    whose accel:device_profile has ``groups`` (the device profile's groups,
    as Cyborg stores them): nova.accelerator.cyborg turns group i into a
    RequestGroup with requester_id ``device_profile_<i>`` (``resources:RC``
    -> resources, ``trait:T`` required/forbidden), and
    ResourceRequest.to_querystring() suffixes each with its requester id,
    puts the flavor's resources unsuffixed, the flavor's group_policy, the
    limit and root_required, sorted and urlencoded."""
    q = [('limit', limit), ('root_required', NOVA_ROOT),
         ('resources', ','.join(sorted(f'{rc}:{n}'
                                       for rc, n in FLAVOR.items())))]
    if group_policy:
        q.append(('group_policy', group_policy))
    for i, group in enumerate(groups):
        sfx = f'device_profile_{i}'
        res = sorted(f'{k[len("resources:"):]}:{int(v)}'
                     for k, v in group.items() if k.startswith('resources:'))
        req = sorted(k[len('trait:'):] for k, v in group.items()
                     if k.startswith('trait:') and v == 'required')
        forb = sorted(k[len('trait:'):] for k, v in group.items()
                      if k.startswith('trait:') and v == 'forbidden')
        q.append(('resources' + sfx, ','.join(res)))
        if req or forb:
            q.append(('required' + sfx, ','.join(req + ['!' + t
                                                        for t in forb])))
    return urllib.parse.urlencode(sorted(q))
