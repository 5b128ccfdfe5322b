"""URLconf placeholder; the REST API arrives with the API issue."""

urlpatterns: list = []
