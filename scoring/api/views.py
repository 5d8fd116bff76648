from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from scoring.roles import user_roles


class MeView(APIView):
    """Who the caller is and which roles it has; any authenticated user."""

    @extend_schema(
        responses=inline_serializer(
            "Me",
            {"username": serializers.CharField(), "roles": serializers.ListField()},
        )
    )
    def get(self, request: Request) -> Response:
        return Response(
            {"username": request.user.get_username(), "roles": sorted(user_roles(request.user))}
        )
