"""Models the impressions tests count into, with names that only work when the SQL quotes them."""

from django.db import models


class Article(models.Model):
    # Mixed-case table and columns: PostgreSQL folds unquoted names to lower case, so the flush
    # only finds them when it takes the names from the model and quotes them.
    id = models.BigAutoField(primary_key=True, db_column="ArticleId")
    title = models.CharField(max_length=100, default="")
    rating = models.FloatField(default=0)
    views = models.PositiveBigIntegerField(default=0, db_column="ViewCount")
    # A count column added to an existing table as nullable: NULL until its first flush.
    reach = models.PositiveBigIntegerField(null=True, blank=True)
    # 32 bits on PostgreSQL (integer): a count past 2,147,483,647 does not fit (impressions.W008).
    shares = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "countedApp_Article"

    def __str__(self):
        return self.title or f"article {self.pk}"


class Listing(models.Model):
    """A parent of multi-table inheritance (as a CMS's page): its children share its ids."""

    name = models.CharField(max_length=100, default="")
    listed_views = models.PositiveBigIntegerField(default=0)

    def __str__(self):
        return self.name or f"listing {self.pk}"


class Story(Listing):
    """A child of multi-table inheritance: its primary key is a one-to-one link to Listing."""

    reads = models.PositiveBigIntegerField(default=0)


class Feature(Story):
    """A grandchild (a page type of a page type): its key links to Story's, a link in turn."""

    featured_reads = models.PositiveBigIntegerField(default=0)


class Offer(Listing):
    """A child of multi-table inheritance with a primary key of its own: its link to Listing,
    which holds the listing's id, is not its pk."""

    number = models.IntegerField(primary_key=True)
    offer_views = models.PositiveBigIntegerField(default=0)


class Tag(models.Model):
    """A model impressions cannot count: its primary key is not an integer (impressions.E004)."""

    name = models.SlugField(primary_key=True)
    uses = models.PositiveIntegerField(default=0)

    def __str__(self):
        return self.name


class PublishedManager(models.Manager):
    """A default manager that hides rows, as a blog's drafts: the flush counts them all the same."""

    def get_queryset(self):
        return super().get_queryset().filter(published=True)


class Entry(models.Model):
    """Hidden rows, a primary key not named `id`, quoted column names: a CMS's post as it is."""

    entry_no = models.BigAutoField(primary_key=True, db_column="EntryNo")
    title = models.CharField(max_length=100, default="")
    published = models.BooleanField(default=True)
    hits = models.PositiveBigIntegerField(default=0, db_column="Hits")

    # The default manager hides drafts, and so does the base manager (Django's docs advise
    # against it; projects do it): neither may make the flush drop a draft's counts.
    objects = PublishedManager()
    everything = models.Manager()  # noqa: DJ012 (a manager, not a field)

    class Meta:
        base_manager_name = "objects"

    def __str__(self):
        return self.title or f"entry {self.pk}"


class Badge(models.Model):
    """A SmallAutoField key (smallint in PostgreSQL) and a count column with a database default."""

    id = models.SmallAutoField(primary_key=True)
    shown = models.PositiveBigIntegerField(db_default=0)

    def __str__(self):
        return f"badge {self.pk}"


class Sensor(models.Model):
    """An IntegerField key of the project's own numbering, negative ids included."""

    number = models.IntegerField(primary_key=True)
    reads = models.PositiveBigIntegerField(default=0)
    # Whole numbers, but no integer field: no count (E003).
    total = models.DecimalField(max_digits=20, decimal_places=0, default=0)

    def __str__(self):
        return f"sensor {self.pk}"


class FeaturedArticle(Article):
    """A proxy of Article: the same table and ids."""

    class Meta:
        proxy = True


class SchemaPost(models.Model):
    """Unmanaged, in a PostgreSQL schema of its own (the test creates the schema and table)."""

    id = models.BigAutoField(primary_key=True)
    seen = models.PositiveBigIntegerField(default=0)

    class Meta:
        managed = False
        db_table = '"content"."Post"'

    def __str__(self):
        return f"schemapost {self.pk}"


class ArticleView(models.Model):
    """A database view over Article's table (the test creates it), not managed by Django."""

    id = models.BigIntegerField(primary_key=True)
    views = models.PositiveBigIntegerField()

    class Meta:
        managed = False
        db_table = "countedapp_article_view"

    def __str__(self):
        return f"articleview {self.pk}"


class Voucher(models.Model):
    """Keys impressions cannot count (impressions.E004): a UUID."""

    id = models.UUIDField(primary_key=True)
    uses = models.PositiveBigIntegerField(default=0)

    def __str__(self):
        return str(self.pk)


class Placement(models.Model):
    """A composite primary key (Django 5.2+): no single integer id to count by (E004)."""

    pk = models.CompositePrimaryKey("slot", "day")
    slot = models.IntegerField()
    day = models.IntegerField()
    shown = models.PositiveBigIntegerField(default=0)

    def __str__(self):
        return f"{self.slot}/{self.day}"
