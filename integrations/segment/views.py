"""The Segment HTTP tracking API at /segment/v1/: ``track``, ``identify``, ``group``,
``page``, ``screen``, ``alias`` (one call each) and ``batch`` (``{"batch": [calls...]}``), so
an SDK whose host is ``<base URL>/segment`` works unchanged.

Answers as Segment's clients expect: 200 ``{"success": true, ...}`` when the request was
accepted, with per-call ``errors`` for calls that were not (the good ones are stored); 400
when no call was valid; 413 beyond 32 KB for a call or 500 KB for a batch; 401 for a missing
or wrong write key; 429 with Retry-After when throttled. Error bodies carry ``code`` and
``message``, which the SDKs log."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.models import SourceKey
from integrations.segment.auth import CanWriteEvents, WriteKeyAuthentication, WriteKeyThrottle
from integrations.segment.calls import MAX_BATCH_BYTES, MAX_CALL_BYTES, parse_call
from integrations.segment.services import calls_ingest, source_key_record_use
from scoring.api.ingest import BodyTooLarge, read_json_body


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"


class SegmentView(APIView):
    """One endpoint; ``call_type`` None is the batch endpoint."""

    call_type: str | None = None
    authentication_classes = [WriteKeyAuthentication]
    permission_classes = [CanWriteEvents]
    throttle_classes = [WriteKeyThrottle]
    # The body is read (bounded) by initial(), before authentication: it may hold writeKey.
    parser_classes: list = []
    schema = None  # the Segment spec documents these, not our OpenAPI schema

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        if request.method == "OPTIONS":
            return  # a browser's CORS preflight carries no key; it only learns the headers
        request.segment_body = None
        self.body_error: ParseError | None = None
        if request.method == "POST":
            limit = MAX_BATCH_BYTES if self.call_type is None else MAX_CALL_BYTES
            try:
                request.segment_body = read_json_body(request, limit)
            except BodyTooLarge as exc:
                raise PayloadTooLarge(str(exc)) from None
            except ParseError as exc:
                # Said after authentication: a caller without a key learns nothing more.
                self.body_error = exc
        super().initial(request, *args, **kwargs)

    def options(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(status=status.HTTP_204_NO_CONTENT)

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        # Browser SDKs (analytics.js, RudderStack's) post from the tracked site's origin. Any
        # origin may: the write key, never a cookie, authenticates, so no credentials are
        # allowed. A browser should carry a source key, never a user's API token.
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Access-Control-Allow-Origin"] = "*"
        response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response["Access-Control-Allow-Headers"] = "Authorization, Content-Type, Content-Encoding"
        response["Access-Control-Max-Age"] = "86400"
        return response

    def handle_exception(self, exc: Exception) -> Response:
        response = super().handle_exception(exc)
        data = response.data
        detail = data.get("detail", data) if isinstance(data, dict) else data or ""
        code = getattr(exc, "default_code", "error")
        if hasattr(detail, "code"):
            code = detail.code
        response.data = {"success": False, "code": str(code), "message": str(detail)}
        return response

    def post(self, request: Request) -> Response:
        if self.body_error is not None:
            raise self.body_error
        body = request.segment_body
        if not isinstance(body, dict):
            raise ParseError("The body must be a JSON object.")
        if self.call_type is None:
            items = body.get("batch")
            if not isinstance(items, list) or not items:
                raise ParseError("batch: must be a non-empty list of calls.")
        else:
            items = [body]
        now = timezone.now()
        calls, errors = [], []
        for index, item in enumerate(items):
            call, reasons = parse_call(item, index=index, now=now, call_type=self.call_type)
            if call is None:
                errors.append(_error(index, item, reasons))
            else:
                calls.append(call)
        result = calls_ingest(calls)
        errors.extend(_error(index, items[index], reasons) for index, reasons in result.rejected)
        errors.sort(key=lambda e: e["index"])
        payload = {
            "success": bool(calls) and len(errors) < len(items),
            "accepted": result.accepted,
            "duplicate": result.duplicate,
            "rejected": len(errors),
            "errors": errors,
        }
        if isinstance(request.auth, SourceKey):
            first = errors[0]["reasons"][0] if errors else ""
            source_key_record_use(
                request.auth.pk,
                accepted=result.accepted,
                duplicate=result.duplicate,
                rejected=len(errors),
                error=first,
            )
        if not payload["success"]:
            # Nothing was stored: a 400 the SDKs do not retry, with what Segment's carry.
            payload.update(code="invalid_request", message=errors[0]["reasons"][0])
            return Response(payload, status=400)
        return Response(payload)


def _error(index: int, item: Any, reasons: list[str]) -> dict[str, Any]:
    error: dict[str, Any] = {"index": index, "reasons": reasons}
    if isinstance(item, dict) and isinstance(item.get("messageId"), str):
        error["messageId"] = item["messageId"][:255]
    return error


def _endpoint(call_type: str | None) -> Any:
    return type(
        f"Segment{(call_type or 'batch').title()}View", (SegmentView,), {"call_type": call_type}
    )


TrackView = _endpoint("track")
IdentifyView = _endpoint("identify")
GroupView = _endpoint("group")
PageView = _endpoint("page")
ScreenView = _endpoint("screen")
AliasView = _endpoint("alias")
BatchView = _endpoint(None)
