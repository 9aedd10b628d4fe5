/*
 * An intrusive FIFO of waiters, as macros so that each primitive keeps its
 * own node type: a node has `prev`, `next` and `queued` fields, a queue has
 * `head` and `tail`. Used under the owning object's lock.
 */
#ifndef WEFT_LIST_H
#define WEFT_LIST_H

#define weft__fifo_push(q, n)                                                                      \
    do {                                                                                           \
        (n)->next = NULL;                                                                          \
        (n)->prev = (q)->tail;                                                                     \
        if ((q)->tail)                                                                             \
            (q)->tail->next = (n);                                                                 \
        else                                                                                       \
            (q)->head = (n);                                                                       \
        (q)->tail = (n);                                                                           \
        (n)->queued = 1;                                                                           \
    } while (0)

#define weft__fifo_remove(q, n)                                                                    \
    do {                                                                                           \
        if ((n)->prev)                                                                             \
            (n)->prev->next = (n)->next;                                                           \
        else                                                                                       \
            (q)->head = (n)->next;                                                                 \
        if ((n)->next)                                                                             \
            (n)->next->prev = (n)->prev;                                                           \
        else                                                                                       \
            (q)->tail = (n)->prev;                                                                 \
        (n)->prev = (n)->next = NULL;                                                              \
        (n)->queued = 0;                                                                           \
    } while (0)

#endif
