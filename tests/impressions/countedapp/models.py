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


class Tag(models.Model):
    """A model impressions cannot count: its primary key is not an integer (impressions.E004)."""

    name = models.SlugField(primary_key=True)
    uses = models.PositiveIntegerField(default=0)

    def __str__(self):
        return self.name
