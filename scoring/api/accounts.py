"""`/api/v1/accounts/`: the visible accounts by score (`?band=`, `?page=`, `?page_size=`), and
one account with its contacts, buying-group coverage and recent events."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from scoring.api.permissions import HasCapability
from scoring.models import Account
from scoring.selectors.accounts import (
    ACCOUNT_PAGE_SIZE,
    MAX_ACCOUNT_PAGE_SIZE,
    account_list,
    account_view,
    visible_accounts,
)


class AccountSerializer(serializers.ModelSerializer):
    class Meta:
        model = Account
        fields = [
            "id",
            "name",
            "key",
            "source",
            "external_id",
            "domain",
            "score",
            "band",
            "contact_count",
            "scored_contacts",
            "scored_at",
        ]
        read_only_fields = fields


class AccountQuery(serializers.Serializer):
    band = serializers.CharField(required=False, max_length=60)
    page = serializers.IntegerField(required=False, min_value=1, default=1)
    page_size = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ACCOUNT_PAGE_SIZE, default=ACCOUNT_PAGE_SIZE
    )


class AccountListView(APIView):
    permission_classes = [IsAuthenticated, HasCapability]
    required_capability = "view_leads"

    @extend_schema(parameters=[AccountQuery], responses=AccountSerializer(many=True))
    def get(self, request: Request) -> Response:
        query = AccountQuery(data=request.query_params)
        if not query.is_valid():
            return Response(query.errors, status=400)
        data = query.validated_data
        rows, has_more = account_list(
            request.user, band=data.get("band"), page=data["page"], size=data["page_size"]
        )
        next_url = None
        if has_more:
            params = request.query_params.copy()
            params["page"] = str(data["page"] + 1)
            next_url = request.build_absolute_uri("?" + params.urlencode())
        return Response({"next": next_url, "results": AccountSerializer(rows, many=True).data})


class AccountDetailView(APIView):
    permission_classes = [IsAuthenticated, HasCapability]
    required_capability = "view_leads"

    @extend_schema(responses=AccountSerializer)
    def get(self, request: Request, account_id: int) -> Response:
        account = get_object_or_404(visible_accounts(request.user), pk=account_id)
        view = account_view(account, request.user)
        body = AccountSerializer(account).data
        body["contacts"] = view.contacts
        body["buying_group"] = {
            "engaged_contacts": view.engaged_contacts,
            "personas": view.personas_engaged,
        }
        body["recent_events"] = view.recent_events
        return Response(body)
