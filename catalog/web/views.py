"""The web pages. Every view needs a signed-in user with the permission it names
(:func:`requires`): anonymous visitors are sent to the sign-in page, others get the 403 page.

| page | permission |
|---|---|
| ``/`` and ``/search/`` (gallery), ``/assets/<id>/``, ``/assets/<id>/thumbnail`` | ``catalog.view_asset`` |
| ``/upload/`` | ``catalog.add_asset`` |
| ``/assets/<id>/review/``, ``/assets/bulk-tag/``, ``/thresholds/`` and its counts | ``catalog.review_asset`` |
| ``/thresholds/apply/``, ``/thresholds/reset/`` (POST) | ``catalog.change_tagthreshold`` |
"""

from __future__ import annotations

import functools
import math
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import FileResponse, HttpResponse, HttpResponseNotModified, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import parse_etags, url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from catalog import facets, roles, services, thresholds, thumbnails
from catalog.conf import imgtag_settings
from catalog.models import Asset
from catalog.query import QueryError, normalize_tag_name
from catalog.web.forms import (
    ApplyThresholdForm,
    BulkTagForm,
    ReviewForm,
    ThresholdForm,
    ThresholdTargetForm,
)
from core.decode_budget import DecodeBusy

PAGE_SIZE = 24
MAX_FACET_FILTERS = 10  # facet values at once: each is a subquery, like a query term
BROWSER_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP"}  # shown as they are; others as a preview
THUMBNAIL_CACHE = "private, max-age=86400"
FACET_TITLES = {
    "tag": "Tags",
    "source": "Source",
    "review": "Review",
    "model": "Model version",
    "date": "Uploaded",
}


def requires(permission: str):
    """Sign-in (redirect to the sign-in page) and then ``permission`` (403 page) for a view."""

    def decorate(view):
        @functools.wraps(view)
        def checked(request, *args, **kwargs):
            if not request.user.has_perm(permission):
                raise PermissionDenied(f"this page needs the permission {permission}")
            return view(request, *args, **kwargs)

        return login_required(checked)

    return decorate


def forbidden(request, exception=None):
    """The 403 page (``handler403``)."""
    return render(request, "catalog/403.html", {"reason": str(exception or "")}, status=403)


# ---------------------------------------------------------------------------- gallery


def _link(filters: facets.Filters, *extra: tuple[str, str]) -> str:
    """The gallery URL (query string) of ``filters``, plus ``extra`` parameters."""
    params = filters.params() + list(extra)
    return f"?{urlencode(params)}" if params else "?"


def _asset_id(request, name: str, problems: list[str]) -> int | None:
    """The asset id in the query parameter ``name`` (None when absent; a problem when not one)."""
    raw = request.GET.get(name, "").strip()
    if not raw:
        return None
    if raw.isascii() and raw.isdigit() and int(raw) < 2**63:
        return int(raw)
    problems.append(f"{name} must be an asset id (a whole number), got {raw!r}")
    return None


def _keyset_page(assets, after: int | None, before: int | None) -> tuple[list[Asset], bool, bool]:
    """A page of ``assets``, newest first: the :data:`PAGE_SIZE` after the asset ``after`` (ids
    below it), or those just before the asset ``before`` (ids above it), or the first page.

    Keyset pagination: any page, the 40,000th of a million assets too, is one index range
    read, where an offset would read every asset before it.

    Returns:
        ``(assets, has_previous, has_next)``.
    """
    if before is not None:
        rows = list(services.with_tags(assets.filter(pk__gt=before).order_by("pk"))[: PAGE_SIZE + 1])
        has_previous = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE][::-1]
        return rows, has_previous, assets.filter(pk__lte=before).exists()
    newer = assets.filter(pk__lt=after) if after is not None else assets
    rows = list(services.with_tags(newer.order_by("-pk"))[: PAGE_SIZE + 1])
    has_previous = after is not None and assets.filter(pk__gte=after).exists()
    return rows[:PAGE_SIZE], has_previous, len(rows) > PAGE_SIZE


@require_GET
@requires(roles.VIEW)
def gallery(request):
    """Thumbnails of the assets that match the search, 24 a page (``after``/``before`` an asset
    id), with facet counts: exact up to :data:`catalog.facets.EXACT_UP_TO` assets, estimates
    from the sample above that (``exact=1`` counts them all).

    A search that cannot run (the query does not parse or is over a limit of
    :mod:`catalog.query`, a bad ``min_score`` or facet value, more than
    :data:`MAX_FACET_FILTERS` facet values, a NUL character anywhere) answers 400: the form
    again with the reasons, and no result.
    """
    filters, problems = facets.parse(request.GET)
    problems += _search_problems(request, filters)
    after, before = _asset_id(request, "after", problems), _asset_id(request, "before", problems)
    exact = request.GET.get("exact") == "1"
    assets = Asset.objects.none()
    if not problems:
        try:
            assets = facets.filter_assets(filters)
        except QueryError as exc:
            problems.append(str(exc))
            assets = Asset.objects.none()
    size, counts = (facets.Size(0), facets.Facets()) if problems else _size_and_facets(assets, filters, exact)
    rows, has_previous, has_next = _keyset_page(facets.counted(assets, size), after, before)
    kept = [("exact", "1")] if exact else []
    # an empty page (past the last asset, or one deleted since) still links to its neighbours
    first = rows[0].pk if rows else (after - 1 if after is not None else before)
    last = rows[-1].pk if rows else (before + 1 if before is not None else after)
    active = [(facet, value, _link(filters.without_value(facet, value))) for facet, value in filters.active()]
    return render(
        request,
        "catalog/gallery.html",
        {
            "filters": filters,
            "problems": problems,
            "assets": rows,
            "size": size,
            "exact": counts.exact,
            "exact_link": _link(filters, ("exact", "1")),
            "sidebar": _sidebar(filters, counts),
            "active": active,
            "prev_link": _link(filters, *kept, ("before", str(first))) if has_previous else "",
            "next_link": _link(filters, *kept, ("after", str(last))) if has_next else "",
            "next_url": request.get_full_path(),
        },
        status=400 if problems else 200,
    )


def _search_problems(request, filters: facets.Filters) -> list[str]:
    """What the parser does not catch: NUL characters anywhere, too many facet values at once."""
    problems = [
        f"{name} must not contain NUL characters"
        for name, values in request.GET.lists()
        if any("\0" in value for value in values)
    ]
    if len(filters.active()) > MAX_FACET_FILTERS:
        problems.append(
            f"{len(filters.active())} filters at once; at most {MAX_FACET_FILTERS} can be combined"
        )
    return problems


def _size_and_facets(assets, filters: facets.Filters, exact: bool) -> tuple[facets.Size, facets.Facets]:
    """The result's size and facet counts: exact when asked, else estimated above a size."""
    if exact:
        size = facets.Size(assets.count())
    else:
        bounds = facets.gallery_bounds(filters)
        # a query alone is counted from the tag rows of its rarest tag
        rows = (
            None if filters.active() else facets.walked_rows(filters.q, bounds, min_score=filters.min_score)
        )
        size = facets.result_size(assets, bounds=bounds, rows=rows)
    if filters == facets.Filters() and not exact:  # the whole catalog: its sidebar is everyone's
        return size, facets.whole_catalog_facets(assets, size)
    return size, facets.facet_counts(assets, filters, size=size)


def _sidebar(filters: facets.Filters, counts: facets.Facets) -> list[tuple]:
    """Each facet's title and values, each value with the link that adds it (or removes it when active)."""
    toggle = filters.without_value, filters.with_value  # an active value's link removes it
    return [
        (
            facet,
            FACET_TITLES[facet],
            [(value, _link(toggle[not value.active](facet, value.value))) for value in values],
        )
        for facet, values in counts.items()
    ]


@require_POST
@requires(roles.REVIEW)
def bulk_tag(request):
    """Add a tag to the assets ticked in the gallery, then go back to it."""
    form = BulkTagForm(request.POST)
    target = request.POST.get("next") or reverse("web:gallery")
    if not url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        target = reverse("web:gallery")
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
        return redirect(target)
    try:
        count = services.add_tag_to_assets(form.cleaned_data["asset"], form.cleaned_data["tag"], request.user)
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request, f"added the tag {normalize_tag_name(form.cleaned_data['tag'])!r} to {count} assets"
        )
    return redirect(target)


# ---------------------------------------------------------------------------- one asset


@require_GET
@requires(roles.VIEW)
def asset_page(request, pk: int):
    """The original, its metadata and every tag row, with review controls for content managers."""
    asset = get_object_or_404(services.with_tags(Asset.objects.all()), pk=pk)
    rows = sorted(
        asset.asset_tags.all(), key=lambda row: (row.review == "rejected", -row.score, row.tag.name)
    )
    if asset.format in BROWSER_FORMATS:
        picture = reverse("catalog:asset-original", args=[pk])
    else:
        picture = f"{reverse('web:asset-thumbnail', args=[pk])}?size={thumbnails.PREVIEW_SIZE}"
    return render(
        request,
        "catalog/asset.html",
        {
            "asset": asset,
            "rows": rows,
            "picture": picture,
            "original_url": reverse("catalog:asset-original", args=[pk]),
            "review_api": reverse("catalog:asset-review", args=[pk]),
        },
    )


@require_GET
@requires(roles.VIEW)
def asset_thumbnail(request, pk: int):
    """The asset's JPEG thumbnail (256 px; ``?size=1024`` for the asset page's preview)."""
    asset = get_object_or_404(Asset, pk=pk)
    try:
        size = int(request.GET.get("size", thumbnails.SIZE))
    except ValueError:
        size = -1
    if size not in thumbnails.SIZES:
        return HttpResponse(f"size must be one of {thumbnails.SIZES}", status=400, content_type="text/plain")
    etag = f'"{asset.sha256}"' if size == thumbnails.SIZE else f'"{asset.sha256}-{size}"'
    headers = {"ETag": etag, "Cache-Control": THUMBNAIL_CACHE}
    if (
        etag in parse_etags(request.headers.get("If-None-Match", ""))
        or request.headers.get("If-None-Match") == "*"
    ):
        response = HttpResponseNotModified()
        for key, value in headers.items():
            response[key] = value
        return response
    for _ in range(2):  # a thumbnail evicted between making and opening it is made again
        try:
            handle = thumbnails.get_thumbnail(asset, size).open("rb")
            break
        except thumbnails.ThumbnailUnavailable as exc:
            return HttpResponse(f"no thumbnail: {exc}", status=404, content_type="text/plain")
        except DecodeBusy as exc:  # other thumbnails hold the decode memory: come back soon
            busy = HttpResponse(f"no thumbnail yet: {exc}", status=503, content_type="text/plain")
            busy["Retry-After"] = str(exc.retry_after)
            return busy
        except FileNotFoundError:
            continue
    else:
        return HttpResponse(
            "no thumbnail: the cache is evicting faster than it fills", status=503, content_type="text/plain"
        )
    return FileResponse(handle, content_type="image/jpeg", headers=headers)


@require_POST
@requires(roles.REVIEW)
def asset_review(request, pk: int):
    """Accept, reject or add a tag from a plain form post (the page's script uses the API)."""
    asset = get_object_or_404(Asset, pk=pk)
    form = ReviewForm(request.POST)
    if not form.is_valid():
        messages.error(request, "; ".join(e for errors in form.errors.values() for e in errors))
    else:
        tag, action = form.cleaned_data["tag"], form.cleaned_data["action"]
        try:
            row = services.review(asset, tag, action, request.user)
        except (services.TagNotOnAsset, ValueError) as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"{row.tag.name}: {row.review_state}")
    return redirect("web:asset", pk=pk)


# ---------------------------------------------------------------------------- upload


@require_GET
@requires(roles.UPLOAD)
def upload(request):
    """Drop or pick images; the page's script sends each to ``POST /api/assets/`` on its own."""
    return render(
        request,
        "catalog/upload.html",
        {"upload_api": reverse("catalog:asset-list"), "max_upload_bytes": imgtag_settings().max_upload_bytes},
    )


# ---------------------------------------------------------------------------- thresholds


@require_GET
@requires(roles.REVIEW)
def threshold_page(request):
    """Without ``tag``: every scored tag in a table (tag, assets, threshold in force, how it was
    set), :data:`TAGS_PAGE` a page, sorted by any column (``sort``, ``order``) and filtered by a
    name prefix (``prefix``). With ``tag``: how many assets each threshold would keep, the
    threshold in force and, for users who may (``catalog.change_tagthreshold``), a form that
    applies another one."""
    tag = request.GET.get("tag", "")
    if not normalize_tag_name(tag):
        return render(request, "catalog/thresholds.html", _tag_table_context(request))
    return render(request, "catalog/thresholds.html", _threshold_context(request, tag))


TAGS_PAGE = 50  # rows of the thresholds page's table of tags


def _tag_table_context(request) -> dict:
    """The thresholds page's table of tags: sorted, filtered by prefix and paged as the URL says."""
    prefix = " ".join(request.GET.get("prefix", "").lower().split())
    sort = request.GET.get("sort", "assets")
    sort = sort if sort in thresholds.SORTS else "assets"
    order = request.GET.get("order", "desc" if sort == "assets" else "asc")
    order = order if order in ("asc", "desc") else "asc"
    settings = imgtag_settings()
    rows = thresholds.listing(settings, prefix.replace("\0", ""), sort, descending=order == "desc")
    page = Paginator(rows, TAGS_PAGE).get_page(request.GET.get("page"))
    kept = [("prefix", prefix)] if prefix else []

    def link(**changes) -> str:
        params = dict(kept + [("sort", sort), ("order", order)]) | changes
        return "?" + urlencode({key: value for key, value in params.items() if value not in ("", None)})

    columns = []
    for key, title in (("tag", "tag"), ("assets", "assets"), ("threshold", "threshold")):
        active = key == sort
        flipped = ("asc" if order == "desc" else "desc") if active else ("desc" if key == "assets" else "asc")
        columns.append(
            (
                key,
                title,
                link(sort=key, order=flipped),
                ("ascending" if order == "asc" else "descending") if active else "",
            )
        )
    model, where, _ = thresholds.model_thresholds(settings)
    return {
        "tag": "",
        "prefix": prefix,
        "sort": sort,
        "order": order,
        "page": page,
        "columns": columns,
        "model": f"{model.name}:{model.version}",
        "where": where,
        "prev_link": link(page=page.previous_page_number()) if page.has_previous() else "",
        "next_link": link(page=page.next_page_number()) if page.has_next() else "",
    }


def _threshold_context(request, tag: str, tried: float | None = None) -> dict:
    """The thresholds page of ``tag``; ``tried``: the value in the input (default: the one in force)."""
    tag = normalize_tag_name(tag)
    if not tag:
        return _tag_table_context(request)
    exact = request.GET.get("exact") == "1"  # a common tag is counted on the sample unless asked
    estimated = not exact and thresholds.sampled(tag)
    context = {
        "tag": tag,
        "estimated": estimated,
        "exact_link": f"?{urlencode({'tag': tag, 'exact': '1'})}",
        "sample_above": f"{thresholds.SAMPLE_ABOVE:,}",
    }
    if tag:
        current = thresholds.current(tag, imgtag_settings())
        rows = thresholds.table(tag, exact=not estimated)
        start = (
            tried
            if tried is not None
            else current.value
            if current.value not in (None, float("inf"))
            else 0.5
        )
        most = max((row.kept for row in rows), default=0)
        # the step the current threshold falls in (0.35 <= 0.37 < 0.40)
        at = (
            None
            if current.value is None
            else max((r.threshold for r in rows if r.threshold <= current.value + 1e-9), default=None)
        )
        context.update(
            current=current,
            rows=[
                (row, round(100 * row.kept / most) if most else 0, _step_class(row.threshold, at))
                for row in rows
            ],
            start=start,
            start_kept=thresholds.kept(tag, start, exact=not estimated),
            can_apply=current.value is not None and request.user.has_perm(roles.CHANGE_THRESHOLD),
        )
    return context


def _step_class(threshold: float, current_step: float | None) -> str:
    """``current`` for the step holding the threshold in force, ``below-current`` under it
    (scores there were not all stored: the counts are a lower bound)."""
    if current_step is None:
        return ""
    return "current" if threshold == current_step else "below-current" if threshold < current_step else ""


@require_GET
@requires(roles.REVIEW)
def threshold_count(request):
    """``{"tag", "threshold", "kept", "exact"}``: the live count of the thresholds page (a common
    tag's counted on the sample, ``exact`` false, unless asked with ``exact=1``)."""
    form = ThresholdForm(request.GET)
    if not form.is_valid():
        return JsonResponse({"errors": form.errors}, status=400)
    tag = normalize_tag_name(form.cleaned_data["tag"])
    threshold = form.cleaned_data["threshold"]
    exact = request.GET.get("exact") == "1" or not thresholds.sampled(tag)
    kept = thresholds.kept(tag, threshold, exact=exact)
    return JsonResponse({"tag": tag, "threshold": threshold, "kept": kept, "exact": exact})


def _threshold_problem(request, form, tried: float | None = None, status: int = 400):
    """The thresholds page again, with what was wrong with the form (nothing was changed)."""
    problems = [error for errors in form.errors.values() for error in errors]
    context = _threshold_context(request, form.data.get("tag", ""), tried)
    context["problems"] = problems
    return render(request, "catalog/thresholds.html", context, status=status)


def _check_model(form) -> tuple[thresholds.CurrentThreshold | None, str, int]:
    """The tag's threshold in force, or why the form does not name a tag of the current model
    (and the status to answer with)."""
    tag = normalize_tag_name(form.cleaned_data["tag"])
    current = thresholds.current(tag, imgtag_settings())
    named = (form.cleaned_data["model_name"], form.cleaned_data["model_version"])
    if named != (current.model_name, current.model_version):
        problem = (
            f"the model that tags now is {current.model}, not {':'.join(named)}: "
            "a threshold holds for one model, so look at this one's counts first"
        )
        return None, problem, 409
    if current.default is None:
        return None, f"{tag!r} is not a tag of the model {current.model}", 400
    return current, "", 200


def _typed_threshold(request) -> float | None:
    """The threshold typed in the form when it is a number (shown again with the problems)."""
    try:
        value = float(request.POST.get("threshold", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@require_POST
@requires(roles.CHANGE_THRESHOLD)
def threshold_apply(request):
    """Set a tag's threshold for the current model; images tagged from now on get it."""
    form = ApplyThresholdForm(request.POST)
    if not form.is_valid():
        return _threshold_problem(request, form, _typed_threshold(request))
    current, problem, status = _check_model(form)
    if current is None:
        form.add_error(None, problem)
        return _threshold_problem(request, form, _typed_threshold(request), status)
    tag, value = normalize_tag_name(form.cleaned_data["tag"]), form.cleaned_data["threshold"]
    services.set_threshold(tag, current.model_name, current.model_version, value, request.user)
    messages.success(
        request,
        f"{tag}: threshold {value:g} for {current.model} (was {current.shown}); images tagged from "
        "now on get it, assets tagged before keep their tags until they are tagged again",
    )
    return redirect(f"{reverse('web:thresholds')}?{urlencode({'tag': tag})}")


@require_POST
@requires(roles.CHANGE_THRESHOLD)
def threshold_reset(request):
    """Remove the threshold set for a tag of the current model: the model's default applies again."""
    form = ThresholdTargetForm(request.POST)
    if not form.is_valid():
        return _threshold_problem(request, form)
    current, problem, status = _check_model(form)
    if current is None:
        form.add_error(None, problem)
        return _threshold_problem(request, form, status=status)
    tag = normalize_tag_name(form.cleaned_data["tag"])
    if services.reset_threshold(tag, current.model_name, current.model_version):
        messages.success(request, f"{tag}: back to the default of {current.model}, {current.default_shown}")
    else:
        messages.info(request, f"{tag} already has the default of {current.model}, {current.default_shown}")
    return redirect(f"{reverse('web:thresholds')}?{urlencode({'tag': tag})}")
