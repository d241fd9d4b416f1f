"""Admin sites at once, registering the apps' admin pieces as an adopter does: Django's
`admin.site` (every `@admin.register`) at admin/, a site of its own with all of them at
staffadmin/, and one with the counted model's admin alone at postsadmin/."""

from django.contrib import admin
from django.urls import include, path

from casusult.admin import PostAdmin
from casusult.models import Post
from impressions.admin import DashboardAdmin, FlushAdmin
from impressions.models import Dashboard, Flush
from queues.admin import QueueStatusAdmin
from queues.models import QueueStatus

staff_site = admin.AdminSite(name="staffadmin")
staff_site.register(Post, PostAdmin)
staff_site.register(Flush, FlushAdmin)
staff_site.register(Dashboard, DashboardAdmin)
staff_site.register(QueueStatus, QueueStatusAdmin)
posts_site = admin.AdminSite(name="postsadmin")
posts_site.register(Post, PostAdmin)

urlpatterns = [
    path("admin/rq/", include("queues.rq.dashboard")),
    path("admin/", admin.site.urls),
    path("staffadmin/", staff_site.urls),
    path("postsadmin/", posts_site.urls),
]
