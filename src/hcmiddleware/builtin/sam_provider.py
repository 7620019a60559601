"""The built-in SAM providers: a software SAM from ``[sam] keys``, or the SAM card.

Registered ``trylast``: a site plugin implementing ``hcm_sam_provider`` (a network
HSM, a vendor SAM driver) takes precedence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hcmiddleware.errors import CardAbsentError, ReaderError, SamUnavailableError
from hcmiddleware.hookspecs import hookimpl

if TYPE_CHECKING:
    from hcmiddleware.runtime import Middleware
    from hcmiddleware.sam.base import Sam

NAME = "hcm.sam"


@hookimpl(trylast=True)
def hcm_sam_provider(middleware: Middleware) -> Sam | None:
    """Software SAM when a key set is configured, else the SAM card when its reader is."""
    config = middleware.config
    if config.sam.keys is not None:
        from hcmiddleware.sam.keyset import load_keyset
        from hcmiddleware.sam.software import SoftwareSam

        keys = config.sam.keys
        if not keys.is_absolute() and config.source is not None:
            keys = config.source.parent / keys
        return SoftwareSam(load_keyset(keys))
    if config.readers.sam is not None:
        if config.sam.pin is None:
            raise SamUnavailableError(
                f"the SAM in reader {config.readers.sam!r} needs its PIN",
                hint='set [sam] pin = { env = "HCM_SAM_PIN" } in the config file',
            )
        from hcmiddleware.card.pcsc import PcscTransport
        from hcmiddleware.sam.pcsc import PcscSam

        class _SamInOurReader(PcscSam):
            """The SAM card in the reader opened here: closing it releases the reader
            at once, not when pyscard's finaliser runs (maybe after pcscd is gone)."""

            def close(self) -> None:
                super().close()
                reader.close()

        try:
            reader = PcscTransport(config.readers.sam)
        except (CardAbsentError, ReaderError) as exc:
            # said as the SAM's: a "no card" here is not about the resident's card
            raise SamUnavailableError(
                f"the SAM's reader {config.readers.sam!r}: {exc.message}",
                hint="seat the SAM card in its slot and check the reader's cable, then "
                "try again (no restart needed)"
                if isinstance(exc, CardAbsentError)
                else exc.hint,
            ) from exc
        try:
            return _SamInOurReader(reader, config.sam.pin)
        except BaseException:
            reader.close()
            raise
    return None
