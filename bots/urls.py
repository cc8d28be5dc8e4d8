from django.urls import path

from bots import views

app_name = "bots"
urlpatterns = [
    path("events", views.slack_events, name="slack-events"),
]
