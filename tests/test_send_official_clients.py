"""The official Python clients, written by Customer.io, pointed at the simulated workspace: ``customerio``
(Track API, HTTPS only: the simulator serves TLS with a throw-away certificate) and
``customerio-cdp-analytics`` (Data Pipelines)."""

from __future__ import annotations

import datetime
import ssl
import subprocess
from typing import Any

import pytest

from customerio_source.simulator import SimulatorServer, Workspace
from customerio_source.simulator.send_api import configure

from .send_fixtures import SITE_ID, TRACK_KEY, WRITE_KEY, activities, customer


def self_signed(folder: Any) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key (cryptography if installed, else the openssl command)."""
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                key,
                "-out",
                cert,
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
        )
        return cert, key
    import ipaddress

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(private, hashes.SHA256())
    )
    with open(cert, "wb") as handle:
        handle.write(certificate.public_bytes(serialization.Encoding.PEM))
    with open(key, "wb") as handle:
        handle.write(
            private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return cert, key


@pytest.fixture
def tls_server(tmp_path: Any, monkeypatch: Any) -> Any:
    cert, key = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)  # requests trusts the throw-away certificate
    with SimulatorServer(Workspace(scale="tiny", seed=5), api_key="app", ssl_context=context) as server:
        server.send = configure(server, site_id=SITE_ID, track_api_key=TRACK_KEY, write_key=WRITE_KEY)
        yield server


def test_official_track_client(tls_server: Any) -> None:
    from customerio.client_base import CustomerIOException
    from customerio.track import CustomerIO

    client = CustomerIO(SITE_ID, TRACK_KEY, host="127.0.0.1", port=tls_server.port, retries=0)
    now = tls_server.workspace.now
    client.identify(id="official-1", email="o1@example.com", plan="gold")
    client.track(
        customer_id="official-1",
        name="purchased",
        data={"sku": "A1"},
        timestamp=now - 60,
        id="01J0000000000000000000000A",
    )
    client.track(
        customer_id="official-1",
        name="purchased",
        data={"sku": "A1"},
        timestamp=now - 60,
        id="01J0000000000000000000000A",
    )  # the same id again: ignored
    client.add_device(customer_id="official-1", device_id="tok-1", platform="ios")
    client.batch(
        [
            {
                "type": "person",
                "action": "identify",
                "identifiers": {"id": "official-2"},
                "attributes": {"plan": "silver"},
            }
        ]
    )
    client.merge_customers("id", "official-1", "id", "official-2")
    record = _app_customer(tls_server, "official-1")
    assert record["attributes"]["plan"] == "gold" and record["attributes"]["email"] == "o1@example.com"
    assert [d["id"] for d in record["devices"]] == ["tok-1"]
    acts = _app_activities(tls_server, "official-1")
    assert [(a["name"], a["data"], a["timestamp"]) for a in acts] == [("purchased", {"sku": "A1"}, now - 60)]
    assert _app_customer(tls_server, "official-2") is None  # merged into official-1
    wrong = CustomerIO(SITE_ID, "not-the-key", host="127.0.0.1", port=tls_server.port, retries=0)
    with pytest.raises(CustomerIOException, match="401"):
        wrong.identify(id="x", plan="y")


def test_official_data_pipelines_client(send_server: Any) -> None:
    from customerio.analytics import Client
    from customerio.analytics.request import APIError

    errors: list[Any] = []
    client = Client(
        WRITE_KEY,
        host=send_server.base_url + "/cdp",
        sync_mode=True,
        gzip=True,
        on_error=lambda error, items: errors.append(error),
    )
    client.identify("cdp-1", {"email": "c1@example.com", "plan": "team"})
    client.track("cdp-1", "Signed Up", {"via": "python"})
    client.page("cdp-1", name="Pricing", properties={"url": "https://example.com/pricing"})
    client.group("cdp-1", "acme", {"name": "Acme", "object_type_id": "1"})
    client.flush()
    assert errors == []
    record = customer(send_server, "cdp-1")
    assert record["attributes"]["plan"] == "team" and record["attributes"]["email"] == "c1@example.com"
    names = sorted((a["type"], a["name"]) for a in activities(send_server, "cdp-1"))
    assert names == [("event", "Signed Up"), ("page", "Pricing")]
    bad = Client("wrong-key", host=send_server.base_url + "/cdp", sync_mode=True, max_retries=0)
    with pytest.raises(APIError) as caught:
        bad.identify("cdp-2", {"plan": "x"})
    assert caught.value.status == 401 and customer(send_server, "cdp-2") is None


def _app_customer(server: Any, ident: str) -> dict | None:
    import requests

    answer = requests.post(
        server.base_url + "/v1/customers/attributes",
        params={"id_type": "id"},
        json={"ids": [ident]},
        headers={"Authorization": "Bearer app"},
        timeout=10,
    ).json()
    return answer["customers"][0]["customer"] if answer["customers"] else None


def _app_activities(server: Any, ident: str) -> list[dict]:
    import requests

    return requests.get(
        f"{server.base_url}/v1/customers/{ident}/activities", headers={"Authorization": "Bearer app"}, timeout=10
    ).json()["activities"]
