from django.urls import path

from bots.slack import views

app_name = "bots"
urlpatterns = [
    path("events", views.slack_events, name="slack-events"),
]
