"""The filter of the RQ dashboard's pages (queues/templates/django_rq/) that takes out what the
Content-Security-Policy refuses in django-rq's own markup."""

import re

from django import template

register = template.Library()

# An inline event handler of django-rq's markup (onclick="…"). An escaped value never holds a bare
# double quote, so the attribute ends at the next one, and no text shown on the page matches.
INLINE_HANDLER = re.compile(r'\s+on[a-z]+="[^"]*"')


@register.filter(is_safe=True)
def without_inline_handlers(markup):
    """`markup` without its on…= attributes: the browser reports each one to the policy as it
    parses the page, before any script could take it out; queues/rq_dashboard.js listens instead."""
    return INLINE_HANDLER.sub("", str(markup))
