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


class StaffOnlyPostAdmin(PostAdmin):
    """An adopter's own rule for who may view posts: superusers only, whatever the permissions."""

    def has_view_permission(self, request, obj=None):
        return request.user.is_superuser


class EveryStaffPostAdmin(PostAdmin):
    """The other way: any staff user may view posts, with or without `casusult.view_post`."""

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff


member_site = MemberSite(name="memberadmin")
superuser_site = SuperuserSite(name="superadmin")
for site in (member_site, superuser_site):
    site.register(Post, PostAdmin)
    site.register(Flush, FlushAdmin)
    site.register(Dashboard, DashboardAdmin)

# Sites whose PostAdmin decides who may view posts by a rule of its own.
own_rule_sites = {
    "closedpostsadmin": StaffOnlyPostAdmin,
    "openpostsadmin": EveryStaffPostAdmin,
}
for name, post_admin in own_rule_sites.items():
    site = admin.AdminSite(name=name)
    site.register(Post, post_admin)
    site.register(Dashboard, DashboardAdmin)
    own_rule_sites[name] = site

urlpatterns = [
    *[path(f"{name}/", site.urls) for name, site in own_rule_sites.items()],
    path("memberadmin/", member_site.urls),
    path("superadmin/", superuser_site.urls),
    path("", include("casusult.urls")),  # admin/ and the pages the admin's templates link
]
