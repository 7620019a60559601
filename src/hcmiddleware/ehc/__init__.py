"""The electronic health card (电子健康卡): QR codes, their checks, the issuer's side.

``Middleware.ehc`` (:class:`hcmiddleware.ehc.service.Ehc`) is the service; the
modules here are its parts: :mod:`~hcmiddleware.ehc.codes` (the text of a code),
:mod:`~hcmiddleware.ehc.crypto` (SM2, ECDSA P-256, Ed25519),
:mod:`~hcmiddleware.ehc.revocations` (the issuers' lists), :mod:`~hcmiddleware.ehc.qr`
(codes as pictures) and :mod:`~hcmiddleware.ehc.issuer` (signing, for the reference
platform, the demo and the tests). See ``docs/ehc.md``.
"""
