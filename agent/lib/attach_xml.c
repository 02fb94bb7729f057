/* SPDX-License-Identifier: Apache-2.0 */
/* Domain XML -> the PCI host addresses it passes through (libxml2 + XPath). */
#include <gpuwarden/attach.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <limits.h>
#include <string.h>

#include "attach_internal.h"
#include "util.h"

/* Only the <source> address is the host device; a direct <address> child of
 * <hostdev> is where the guest sees it. */
static const char SOURCE_XPATH[] =
    "/domain/devices/hostdev[@type='pci']/source/address"
    " | /domain/devices/interface[@type='hostdev']/source/address";

static inline void xml_doc_freep(xmlDocPtr *d) { if (*d) xmlFreeDoc(*d); }
static inline void xpath_ctx_freep(xmlXPathContextPtr *c) { if (*c) xmlXPathFreeContext(*c); }
static inline void xpath_obj_freep(xmlXPathObjectPtr *o) { if (*o) xmlXPathFreeObject(*o); }
static inline void xml_charp(xmlChar **s) { if (*s) xmlFree(*s); }
static inline void list_freep(char ***l) { gw_attach_list_free(*l); }

/* One attribute as libvirt reads it: strtoul base 0 ("0x1a", "26", "032"). */
static int address_field(xmlNodePtr node, const char *attr, unsigned long max,
                         bool optional, unsigned long *out)
{
    __attribute__((cleanup(xml_charp))) xmlChar *v = xmlGetProp(node, (const xmlChar *)attr);
    if (!v) {
        if (optional) {
            *out = 0;
            return 0;
        }
        return gw_error_set(-EINVAL, "domain XML line %ld: source address without '%s'",
                            xmlGetLineNo(node), attr);
    }
    const char *s = (const char *)v;
    char *end;
    errno = 0;
    unsigned long n = strtoul(s, &end, 0);
    if (errno || end == s || *end || s[0] == '-' || n > max)
        return gw_error_set(-EINVAL, "domain XML line %ld: source address %s='%.32s' is not a number in 0..0x%lx",
                            xmlGetLineNo(node), attr, s, max);
    *out = n;
    return 0;
}

static int source_address(xmlNodePtr node, char out[GW_ADDR_LEN])
{
    __attribute__((cleanup(xml_charp))) xmlChar *type = xmlGetProp(node, (const xmlChar *)"type");
    if (type && strcmp((const char *)type, "pci"))
        return gw_error_set(-EINVAL, "domain XML line %ld: source address of type '%s', expected 'pci'",
                            xmlGetLineNo(node), (const char *)type);
    unsigned long dom, bus, slot, fn;
    int r;
    if ((r = address_field(node, "domain", 0xffff, true, &dom)) < 0 ||
        (r = address_field(node, "bus", 0xff, false, &bus)) < 0 ||
        (r = address_field(node, "slot", 0x1f, false, &slot)) < 0 ||
        (r = address_field(node, "function", 0x7, false, &fn)) < 0)
        return r;
    snprintf(out, GW_ADDR_LEN, "%04lx:%02lx:%02lx.%lx", dom, bus, slot, fn);
    return 0;
}

static int domain_name(xmlXPathContextPtr ctx, char **name)
{
    __attribute__((cleanup(xpath_obj_freep))) xmlXPathObjectPtr o =
        xmlXPathEvalExpression((const xmlChar *)"string(/domain/name)", ctx);
    if (!o || o->type != XPATH_STRING || !o->stringval || !o->stringval[0])
        return gw_error_set(-EINVAL, "domain XML: no <name>");
    *name = gw_xstrdup((const char *)o->stringval);
    return 0;
}

GW_EXTERN int gw_domain_xml_pci_sources(const char *xml, size_t len, char ***addresses, char **name)
{
    if (addresses)
        *addresses = NULL;
    if (name)
        *name = NULL;
    if (!xml || !addresses)
        return gw_error_set(-EINVAL, "domain XML: no input");
    if (len > INT_MAX)
        return gw_error_set(-EINVAL, "domain XML: %zu bytes is too large", len);

    __attribute__((cleanup(xml_doc_freep))) xmlDocPtr doc =
        xmlReadMemory(xml, (int)len, "domain.xml", NULL,
                      XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (!doc) {
        const xmlError *e = xmlGetLastError();
        return gw_error_set(-EINVAL, "domain XML: not well-formed (line %d: %s)",
                            e ? e->line : 0, e && e->message ? e->message : "parse error");
    }
    xmlNodePtr root = xmlDocGetRootElement(doc);
    if (!root || strcmp((const char *)root->name, "domain"))
        return gw_error_set(-EINVAL, "domain XML: root element is <%s>, expected <domain>",
                            root ? (const char *)root->name : "");

    __attribute__((cleanup(xpath_ctx_freep))) xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    if (!ctx)
        return gw_error_set(-ENOMEM, "domain XML: cannot create an XPath context");
    __attribute__((cleanup(xpath_obj_freep))) xmlXPathObjectPtr set =
        xmlXPathEvalExpression((const xmlChar *)SOURCE_XPATH, ctx);
    if (!set || set->type != XPATH_NODESET)
        return gw_error_set(-EIO, "domain XML: XPath evaluation failed");

    __attribute__((cleanup(list_freep))) char **list = gw_attach_list_empty();
    size_t n = 0;
    int count = set->nodesetval ? set->nodesetval->nodeNr : 0;
    for (int i = 0; i < count; i++) {
        char addr[GW_ADDR_LEN];
        int r = source_address(set->nodesetval->nodeTab[i], addr);
        if (r < 0)
            return r;
        gw_attach_list_add(&list, &n, addr);
    }
    gw_attach_list_sort(list, n);

    if (name) {
        int r = domain_name(ctx, name);
        if (r < 0)
            return r;
    }
    *addresses = GW_TAKE(list);
    return 0;
}
