"""Where each trial's files go as Optuna artifacts: a folder, or an S3 bucket that workers on many machines share.

`--artifacts` takes a folder (default `<run folder>/artifacts`, Optuna's FileSystemArtifactStore) or
`s3://bucket/prefix` (Optuna's Boto3ArtifactStore, which optuna-dashboard reads too). S3 takes the usual AWS
settings: `AWS_ENDPOINT_URL` for S3-compatible servers such as MinIO, credentials from the environment or
`~/.aws`; none is ever printed. The bucket is checked when the store is opened, so an unreachable endpoint,
a missing bucket or refused credentials stop a command before any training.

Readers (the report, the export) take a trial's checkpoint from its folder when this machine has it, and
otherwise from the store (`checkpoint_folder`), so they work on a machine that ran none of the trials.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from optuna.artifacts import Boto3ArtifactStore, FileSystemArtifactStore, download_artifact
from optuna.artifacts.exceptions import ArtifactNotFound

from polyp.checkpoint import CheckpointError, read_info
from polyp.errors import PolypError
from search.engine.outputs import trial_dir
from search.engine.record import TrialRecord

CHECKPOINT_FILES = ("config.json", "model.safetensors", "training.json")  # uploaded as checkpoint-<name>


class ArtifactStoreError(PolypError):
    """An artifact store that cannot be used (unreachable, missing bucket, refused credentials)."""


class PrefixedStore:
    """An artifact store that keeps every artifact under `prefix/` of another store (a bucket's folder)."""

    def __init__(self, store, prefix: str):
        self.store, self.prefix = store, prefix.strip("/")

    def _key(self, artifact_id: str) -> str:
        return f"{self.prefix}/{artifact_id}"

    def open_reader(self, artifact_id: str) -> BinaryIO:
        return self.store.open_reader(self._key(artifact_id))

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        self.store.write(self._key(artifact_id), content_body)

    def remove(self, artifact_id: str) -> None:
        self.store.remove(self._key(artifact_id))


def open_artifact_store(run_dir: Path, location: str | None = None):
    """The artifact store at `location` (a folder or s3://bucket/prefix), by default `<run_dir>/artifacts`.

    Raises:
        ArtifactStoreError: an S3 endpoint that does not answer, a bucket that does not exist, or credentials
            the server refuses (the message names the bucket and the endpoint, never a secret).
    """
    if location is None or not location.startswith("s3://"):
        folder = Path(location) if location else run_dir / "artifacts"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ArtifactStoreError(f"--artifacts {folder}: cannot be used as a folder ({error.strerror or error})") from None
        return FileSystemArtifactStore(str(folder))
    bucket, _, prefix = location[len("s3://"):].partition("/")
    if not bucket:
        raise ArtifactStoreError(f"--artifacts {location}: name a bucket, e.g. s3://my-bucket/polyp-runs")
    client = _checked_client(bucket, location)
    store = Boto3ArtifactStore(bucket, client=client)
    return PrefixedStore(store, prefix) if prefix.strip("/") else store


def _checked_client(bucket: str, location: str):
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        client = boto3.client("s3")
    except (BotoCoreError, ValueError) as error:  # an unknown AWS_PROFILE, an endpoint URL without a scheme
        raise ArtifactStoreError(f"--artifacts {location}: the AWS settings do not make an S3 client "
                                 f"({type(error).__name__}: {error}); check AWS_PROFILE and AWS_ENDPOINT_URL") from None
    endpoint = client.meta.endpoint_url
    try:
        client.head_bucket(Bucket=bucket)
    except NoCredentialsError:
        raise ArtifactStoreError(f"--artifacts {location}: no AWS credentials found (set AWS_ACCESS_KEY_ID and "
                                 f"AWS_SECRET_ACCESS_KEY, or ~/.aws/credentials)") from None
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket"):
            raise ArtifactStoreError(f"--artifacts {location}: bucket {bucket!r} does not exist at {endpoint}; "
                                     f"create it first") from None
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise ArtifactStoreError(f"--artifacts {location}: {endpoint} refused the credentials for bucket "
                                     f"{bucket!r} ({code}); check the AWS credentials") from None
        raise ArtifactStoreError(f"--artifacts {location}: {endpoint} answered {code} for bucket {bucket!r}") from None
    except BotoCoreError as error:
        raise ArtifactStoreError(f"--artifacts {location}: cannot reach the S3 endpoint {endpoint} "
                                 f"({type(error).__name__}); check AWS_ENDPOINT_URL and the network") from None
    return client


def _belongs(folder: Path, study_name: str, number: int) -> bool:
    if not folder.is_dir():
        return False
    try:
        extra = read_info(folder).extra
    except CheckpointError:
        return False
    return extra.get("study") == study_name and extra.get("trial") == number


@contextlib.contextmanager
def checkpoint_folder(store, run_dir: Path, study_name: str, trial) -> Iterator[Path | None]:
    """The trial's checkpoint folder: its own on this machine, else one fetched from `store`; None if it has none.

    A folder here counts only when its training.json names this study and trial (not one left by an earlier
    study of the same name in another storage).
    """
    local = trial_dir(run_dir, study_name, trial.number) / "checkpoint"
    if _belongs(local, study_name, trial.number):
        yield local
        return
    ids = TrialRecord.of(trial).artifacts
    names = {name: ids.get(f"checkpoint-{name}") for name in CHECKPOINT_FILES}
    if not all(names.values()):
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="polyp-checkpoint-") as scratch:
        folder = Path(scratch) / "checkpoint"
        folder.mkdir()
        try:
            for name, artifact_id in names.items():
                download_artifact(artifact_store=store, artifact_id=artifact_id, file_path=str(folder / name))
        except ArtifactNotFound:
            yield None
            return
        yield folder
