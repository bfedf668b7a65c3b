"""API keys and the Admin API: OAuth client credentials, api_keys create/list/describe/update/delete, projects."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from pinecone import Admin, ApiError, ForbiddenError, NotFoundError, Pinecone, UnauthorizedError

from pinecone_emulator.pytest_plugin import EmulatorHandle
from tests.integration.emulator.conftest import IndexFactory


@pytest.fixture
def admin(pinecone_emulator: EmulatorHandle) -> Iterator[Admin]:
    client = Admin(
        client_id=pinecone_emulator.client_id,
        client_secret=pinecone_emulator.client_secret,
        host=pinecone_emulator.url,
        oauth_url=pinecone_emulator.oauth_url,
    )
    yield client
    client.close()


def test_oauth_token_endpoint_issues_bearer_tokens(pinecone_emulator: EmulatorHandle) -> None:
    response = httpx.post(
        pinecone_emulator.oauth_url,
        json={
            "client_id": pinecone_emulator.client_id,
            "client_secret": pinecone_emulator.client_secret,
            "grant_type": "client_credentials",
            "audience": "https://api.pinecone.io/",
        },
    )

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert isinstance(body["expires_in"], int)
    listed = httpx.get(
        f"{pinecone_emulator.url}/admin/projects", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert listed.status_code == 200


def test_wrong_client_secret_is_refused(pinecone_emulator: EmulatorHandle) -> None:
    raw = httpx.post(
        pinecone_emulator.oauth_url,
        json={"client_id": pinecone_emulator.client_id, "client_secret": "wrong", "grant_type": "client_credentials"},
    )
    with pytest.raises(ApiError) as raised:
        Admin(
            client_id=pinecone_emulator.client_id,
            client_secret="wrong",
            host=pinecone_emulator.url,
            oauth_url=pinecone_emulator.oauth_url,
        )

    assert raw.status_code == 401
    assert raw.json() == {"error": "access_denied", "error_description": "Unauthorized"}
    assert raised.value.status_code == 401


def test_admin_api_without_a_token_is_401(pinecone_emulator: EmulatorHandle) -> None:
    response = httpx.get(f"{pinecone_emulator.url}/admin/projects", headers={"Authorization": "Bearer forged"})

    assert response.status_code == 401
    assert response.text == "Unauthorized"


def test_projects_list_and_describe(admin: Admin, pinecone_emulator: EmulatorHandle) -> None:
    projects = admin.projects.list()
    project = admin.projects.describe(project_id=pinecone_emulator.project_id)

    assert [p.id for p in projects] == [pinecone_emulator.project_id]
    assert project.name == "emulator"
    with pytest.raises(NotFoundError):
        admin.projects.describe(project_id="other-project")


def test_created_key_works_and_lists_without_its_secret(admin: Admin, pinecone_emulator: EmulatorHandle) -> None:
    created = admin.api_keys.create(project_id=pinecone_emulator.project_id, name="worker", roles=["DataPlaneEditor"])
    listed = admin.api_keys.list(project_id=pinecone_emulator.project_id)
    described = admin.api_keys.describe(api_key_id=created.key.id)
    client = Pinecone(api_key=created.value, host=pinecone_emulator.url)

    assert created.value.startswith("pcsk_")
    assert created.key.roles == ["DataPlaneEditor"]
    assert created.key.id in [k.id for k in listed]
    assert described.name == "worker"
    assert (
        created.value not in httpx.get(f"{pinecone_emulator.url}/_emulator/state").text
    )  # secrets are never shown again
    with pytest.raises(ForbiddenError):  # a data-plane key cannot use the control plane
        client.list_indexes()


def test_update_key_changes_name_and_roles(admin: Admin, pinecone_emulator: EmulatorHandle) -> None:
    created = admin.api_keys.create(project_id=pinecone_emulator.project_id, name="before")

    updated = admin.api_keys.update(api_key_id=created.key.id, name="after", roles=["ProjectViewer"])

    assert created.key.roles == ["ProjectEditor"]
    assert (updated.name, updated.roles) == ("after", ["ProjectViewer"])


def test_revoked_key_gets_401_on_its_next_request(
    admin: Admin, pinecone_emulator: EmulatorHandle, make_index: IndexFactory
) -> None:
    make_index(name="rotating", dimension=2)
    old = admin.api_keys.create(project_id=pinecone_emulator.project_id, name="old")
    new = admin.api_keys.create(project_id=pinecone_emulator.project_id, name="new")
    host = pinecone_emulator.index_host("rotating")
    old_client = Pinecone(api_key=old.value, host=pinecone_emulator.url).Index(host=host)
    new_client = Pinecone(api_key=new.value, host=pinecone_emulator.url).Index(host=host)
    old_client.upsert(vectors=[("a", [1.0, 0.0])])

    admin.api_keys.delete(api_key_id=old.key.id)

    with pytest.raises(UnauthorizedError) as raised:
        old_client.upsert(vectors=[("b", [0.0, 1.0])])
    assert raised.value.status_code == 401
    assert new_client.upsert(vectors=[("b", [0.0, 1.0])]).upserted_count == 1
    assert pinecone_emulator.control.count(operation="upsert", status=401, api_key=old.key.id) == 1
    assert pinecone_emulator.control.count(operation="upsert", status=200, api_key=new.key.id) == 1
    with pytest.raises(NotFoundError):
        admin.api_keys.describe(api_key_id=old.key.id)


def test_viewer_key_can_read_but_not_write(
    admin: Admin, pinecone_emulator: EmulatorHandle, make_index: IndexFactory
) -> None:
    make_index(name="viewed", dimension=2).upsert(vectors=[("a", [1.0, 0.0])])
    viewer = admin.api_keys.create(project_id=pinecone_emulator.project_id, name="ro", roles=["DataPlaneViewer"])
    index = Pinecone(api_key=viewer.value, host=pinecone_emulator.url).Index(
        host=pinecone_emulator.index_host("viewed")
    )

    assert "a" in index.fetch(ids=["a"]).vectors
    with pytest.raises(ForbiddenError):
        index.upsert(vectors=[("b", [0.0, 1.0])])


def test_invalid_role_is_400(admin: Admin, pinecone_emulator: EmulatorHandle) -> None:
    token = httpx.post(
        pinecone_emulator.oauth_url,
        json={
            "client_id": pinecone_emulator.client_id,
            "client_secret": pinecone_emulator.client_secret,
            "grant_type": "client_credentials",
        },
    ).json()["access_token"]

    response = httpx.post(
        f"{pinecone_emulator.url}/admin/projects/{pinecone_emulator.project_id}/api-keys",
        headers={"Authorization": f"Bearer {token}"},
        json={"name": "x", "roles": ["Superuser"]},
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert response.json()["status"] == 400


def test_counters_never_contain_key_secrets(pinecone_emulator: EmulatorHandle) -> None:
    secret = "pcsk_this-must-not-leak"
    httpx.get(f"{pinecone_emulator.url}/indexes", headers={"Api-Key": secret})

    report = httpx.get(f"{pinecone_emulator.url}/_emulator/counters").text

    assert secret not in report
    assert "unknown:" in report
