"""Admin sites whose own has_permission decides who enters, as an adopter may write them:
`memberadmin/` lets in any active user, staff or not; `superadmin/` superusers only. Each
registers the apps' admin pieces; inside, each page asks for its model's permissions as on
Django's `admin.site` (admin/)."""

from django.contrib import admin
from django.urls import include, path

from casusult.admin import PostAdmin
from casusult.models import Post
from impressions.admin import DashboardAdmin, FlushAdmin
from impressions.models import Dashboard, Flush


class MemberSite(admin.AdminSite):
    def has_permission(self, request):
        return request.user.is_active


class SuperuserSite(admin.AdminSite):
    def has_permission(self, request):
        return request.user.is_active and request.user.is_superuser


member_site = MemberSite(name="memberadmin")
superuser_site = SuperuserSite(name="superadmin")
for site in (member_site, superuser_site):
    site.register(Post, PostAdmin)
    site.register(Flush, FlushAdmin)
    site.register(Dashboard, DashboardAdmin)

urlpatterns = [
    path("memberadmin/", member_site.urls),
    path("superadmin/", superuser_site.urls),
    path("", include("casusult.urls")),  # admin/ and the pages the admin's templates link
]
