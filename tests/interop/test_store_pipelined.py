"""Our storescu and storescp apps with an asynchronous operations window (PS3.7 D.3.3.3).

Our storescu proposes a window with `--async-ops N`; our storescp allows up to
16 outstanding C-STOREs and performs them in order. Both are real processes
on loopback; every instance must arrive bit for bit, and the window each side
logged must be the one negotiated.
"""

from __future__ import annotations

import pytest

from tests.conftest import LOOPBACK, our_app
from tests.interop import store_data
from tests.interop.store_data import SYNTAXES

TRANSFER_TIMEOUT = 120.0
SCP_TITLE = "STORESCP"
COUNT = 40


@pytest.fixture(scope="module")
def many_small(tmp_path_factory):
    folder = tmp_path_factory.mktemp("many-small")
    return [
        store_data.write_instance(store_data.small_ct(seed), SYNTAXES["implicit"], folder / f"{seed}.dcm", store_data.SMALL)
        for seed in range(COUNT)
    ]


@pytest.mark.parametrize("asked, allowed", [("4", "4"), ("0", "16"), ("64", "16")])
def test_our_storescu_pipelines_to_our_storescp(many_small, peers, client, tmp_path, asked, allowed):
    out = tmp_path / "received"
    ours = peers.start("our-storescp", lambda port: our_app("storescp", str(port), "-ba", LOOPBACK, "-od", str(out)))

    result = client(
        our_app("storescu", LOOPBACK, str(ours.port), *(str(i.path) for i in many_small), "-d", "-aec", SCP_TITLE,
                "--async-ops", asked),
        timeout=TRANSFER_TIMEOUT,
    )

    assert result.returncode == 0, result.output
    assert f"Accepted Asynchronous Operations Window Negotiation: invoked {allowed}, performed 1" in result.output
    assert result.output.count("Received Store Response (Status: 0x0000 - Success)") == COUNT
    for instance in many_small:
        stored = out / f"{instance.sop_instance_uid}.dcm"
        assert store_data.data_digest(stored) == store_data.data_digest(instance.path)
