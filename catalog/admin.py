"""Admin pages: browse assets with their tags, edit tags and the tag hierarchy, see model versions
and the tag thresholds set for them.

Assets are created by uploads and imports only (the admin cannot add one); their content
fields are read-only, their tags editable inline.
"""

from django.contrib import admin
from django.template.defaultfilters import filesizeformat

from catalog import counts
from catalog.models import Asset, AssetTag, ModelVersion, Tag, TagThreshold
from core.imageio import SUPPORTED_FORMATS


class AssetTagInline(admin.TabularInline):
    model = AssetTag
    extra = 0
    fields = ["tag", "score", "source", "model_version", "review", "reviewed_by", "updated_at"]
    readonly_fields = ["updated_at"]
    autocomplete_fields = ["tag"]
    raw_id_fields = ["reviewed_by"]
    ordering = ["-score"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("tag", "model_version", "reviewed_by")


class FormatFilter(admin.SimpleListFilter):
    """The formats the catalog accepts, as the filter's choices: Django's own filter of a field's
    values reads every asset for the distinct ones (a full scan of the table, on every page)."""

    title = "format"
    parameter_name = "format"

    def lookups(self, request, model_admin):
        return [(name, name) for name in SUPPORTED_FORMATS]

    def queryset(self, request, queryset):
        return queryset.filter(format=self.value()) if self.value() else queryset


@admin.register(Asset)
class AssetAdmin(admin.ModelAdmin):
    """The assets' list stays fast at a million assets: its filters have fixed choices (status,
    format, upload time ranges), nothing on it reads every asset for its distinct values (no
    date hierarchy: it lists the years, months and days that hold assets), and a filtered list
    counts its result only, not the whole catalog again."""

    list_display = ["filename", "status", "format", "dimensions", "file_size", "created_at"]
    list_filter = ["status", FormatFilter, "created_at"]
    show_full_result_count = False
    search_fields = ["=sha256", "filename"]
    readonly_fields = [
        "sha256",
        "uri",
        "filename",
        "size",
        "width",
        "height",
        "format",
        "created_at",
        "updated_at",
    ]
    fields = [
        "sha256",
        "uri",
        "filename",
        "size",
        "width",
        "height",
        "format",
        "status",
        "error",
        "created_at",
        "updated_at",
    ]
    inlines = [AssetTagInline]

    def has_add_permission(self, request):
        return False

    @admin.display(description="size", ordering="size")
    def file_size(self, asset: Asset) -> str:
        return filesizeformat(asset.size)

    @admin.display(description="pixels")
    def dimensions(self, asset: Asset) -> str:
        return f"{asset.width}×{asset.height}"


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    list_display = ["name", "parent_names", "asset_count"]
    search_fields = ["name"]
    autocomplete_fields = ["parents"]

    def get_queryset(self, request):
        return counts.annotate(super().get_queryset(request)).prefetch_related("parents")  # kept counts

    @admin.display(description="parents")
    def parent_names(self, tag: Tag) -> str:
        return ", ".join(parent.name for parent in tag.parents.all())

    @admin.display(description="assets (not rejected)", ordering="asset_count")
    def asset_count(self, tag: Tag) -> int:
        return tag.asset_count


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """The list shows no per-version count: counting a version's tag rows reads all of them
    (at a million assets 0.6 s a query, and the list ran it in each of its four queries: 3 s a
    page). A version's own page counts its rows, once."""

    list_display = ["name", "version", "created_at"]
    list_filter = ["name"]
    search_fields = ["name", "version"]
    readonly_fields = ["created_at", "tag_count"]

    @admin.display(description="tags produced")
    def tag_count(self, version: ModelVersion) -> int:
        return version.asset_tags.count()


@admin.register(TagThreshold)
class TagThresholdAdmin(admin.ModelAdmin):
    list_display = ["tag", "model_name", "model_version", "threshold", "updated_by", "updated_at"]
    list_filter = ["model_name", "model_version"]
    search_fields = ["tag__name"]
    autocomplete_fields = ["tag"]
    raw_id_fields = ["updated_by"]
    readonly_fields = ["updated_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("tag", "updated_by")
