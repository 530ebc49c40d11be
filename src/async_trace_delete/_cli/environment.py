"""The server's settings, from the flag, the policy file or MLflow's environment variables,
with every refusal naming where the value came from.

``MLFLOW_TRACKING_URI=sqlite:///mlflow.db`` is refused naming ``MLFLOW_TRACKING_URI``, not a
``--tracking-uri`` the user never typed; ``MLFLOW_HTTP_REQUEST_TIMEOUT=0`` names that
variable. The library's messages say what is wrong (and, for a database or a folder, how to
put an ``mlflow server`` in front of it); this module only names the source.
"""

from __future__ import annotations

from collections.abc import Mapping

from .._config import ClientConfig
from .._exceptions import SpecError, UsageError
from .inputs import BadInputError
from .names import Namer

__all__ = ["TRACKING_URI_VARIABLE", "client_config"]

TRACKING_URI_VARIABLE = "MLFLOW_TRACKING_URI"

# ClientConfig fields only the environment sets (the others are in names.FIELDS).
_VARIABLES = {
    "insecure_tls": "MLFLOW_TRACKING_INSECURE_TLS",
    "server_cert_path": "MLFLOW_TRACKING_SERVER_CERT_PATH",
}


def client_config(uri: str | None, source: str | None, environ: Mapping[str, str]) -> ClientConfig:
    """The ClientConfig of ``uri`` (or, when ``None``, of ``MLFLOW_TRACKING_URI``) and the
    other MLFLOW_* variables.

    Args:
        uri: The tracking URI given explicitly, if any.
        source: How the user gave ``uri``, as messages name it (``--tracking-uri``,
            ``policy.toml: tracking_uri``); ``None`` when it comes from the environment.
        environ: The environment.

    Raises:
        BadInputError: a value is refused; the message names the flag, key or variable
            the value came from (never a flag that was not passed), and no secret.
    """
    typed = dict(_VARIABLES)
    if uri is not None and source is not None:
        typed["tracking_uri"] = source
    elif environ.get(TRACKING_URI_VARIABLE):
        typed["tracking_uri"] = TRACKING_URI_VARIABLE
    namer = Namer(typed=typed)
    try:
        return ClientConfig.from_env(environ, tracking_uri=uri)
    except SpecError as error:
        raise BadInputError(namer.message(error)) from None
    except UsageError as error:
        raise BadInputError(namer.message(error)) from None
