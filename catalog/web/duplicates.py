"""The Duplicates page (``/duplicates/``): the groups of near-duplicates (:mod:`catalog.duplicates`)
with their sizes and dates, for content managers to keep one of each and delete the others.

Deleting takes two steps: **Delete the others** shows what will be deleted and asks to confirm;
**Delete N assets** deletes them, their stored originals and their thumbnails. Both need the
permission ``catalog.delete_asset`` (content managers).
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from catalog import duplicates, roles
from catalog.web.views import requires

GROUPS_SHOWN = 50


def _default_keep(group: duplicates.Group) -> int:
    """The asset offered to keep: the most pixels, then the largest file, then the oldest."""
    best = max(group.assets, key=lambda a: (a.width * a.height, a.size, -a.pk))
    return best.pk


@require_GET
@requires(roles.DELETE)
def duplicates_page(request):
    """Every group of near-duplicates (the most recent first), each asset with its thumbnail,
    file size, dimensions and upload date, and a choice of the one to keep."""
    groups = duplicates.groups(GROUPS_SHOWN)
    return render(
        request,
        "catalog/duplicates.html",
        {"groups": [(group, _default_keep(group)) for group in groups], "shown": GROUPS_SHOWN},
    )


@require_POST
@requires(roles.DELETE)
def delete_copies(request):
    """Keep ``keep`` of the group of asset ``group``: without ``confirm``, show what would be
    deleted; with it, delete those assets (``delete`` lists them, as the confirmation showed)."""
    try:
        group_id, keep = int(request.POST["group"]), int(request.POST["keep"])
    except (KeyError, ValueError):
        return HttpResponseBadRequest("group and keep must be asset ids")
    group = duplicates.group_of(group_id)
    if group is None or keep not in {a.pk for a in group.assets}:
        messages.error(request, "That group has changed: nothing was deleted. Choose again.")
        return redirect("web:duplicates")
    others = [a for a in group.assets if a.pk != keep]
    if request.POST.get("confirm") != "1":
        kept = next(a for a in group.assets if a.pk == keep)
        return render(
            request, "catalog/duplicates_confirm.html", {"group": group, "kept": kept, "others": others}
        )
    confirmed = {int(v) for v in request.POST.getlist("delete") if v.isdigit()}
    if confirmed != {a.pk for a in others}:
        messages.error(
            request, "That group has changed since you confirmed: nothing was deleted. Choose again."
        )
        return redirect("web:duplicates")
    deleted = duplicates.delete_assets(others)
    messages.success(
        request, f"Deleted {deleted} near-duplicate{'s' if deleted != 1 else ''}; kept asset {keep}."
    )
    return redirect("web:duplicates")
