/*
** list.h -- intrusive doubly linked lists (an element has `prev` and `next`), for the
** HTTP clients' requests, sockets and pooled connections.
*/
#ifndef HERSH_HTTP_LIST_H
#define HERSH_HTTP_LIST_H

#define LIST_LINK(head, x)        \
  do {                            \
    (x)->prev = NULL;             \
    (x)->next = (head);           \
    if (head) (head)->prev = (x); \
    (head) = (x);                 \
  } while (0)

#define LIST_UNLINK(head, x)                    \
  do {                                          \
    if ((x)->prev) (x)->prev->next = (x)->next; \
    else (head) = (x)->next;                    \
    if ((x)->next) (x)->next->prev = (x)->prev; \
    (x)->prev = (x)->next = NULL;               \
  } while (0)

#endif
